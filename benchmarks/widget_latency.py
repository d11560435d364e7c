"""Milliseconds per widget interaction (adapt + redraw), for notebook 01's sinusoid widget.

A K move adapts from scratch (10 steps, not cached); a steps move only indexes
the cached trajectory and redraws; "new task" draws a task, adapts and redraws.
Target: <= 100 ms per move on a laptop CPU.

    python benchmarks/widget_latency.py [--repeats 20]
"""
from __future__ import annotations

import argparse
import statistics
import time

from helpers.checkpoints import load_checkpoint
from helpers.experiments import get_experiment
from helpers.widgets import MAX_K, MAX_STEPS, Learner, SinusoidAdaptationWidget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    model = load_checkpoint(get_experiment("sinusoid_maml").checkpoint_path).build_model()
    params = {k: v.detach() for k, v in model.named_parameters()}
    widget = SinusoidAdaptationWidget([Learner("MAML", model, params, inner_lr=0.01)], k_shot=5, n_steps=1)

    def timed(action) -> float:
        started = time.perf_counter()
        action()
        return (time.perf_counter() - started) * 1e3

    results = {"K slider move (adapt + draw)": [], "steps slider move (draw)": [], "new task button": []}
    for i in range(args.repeats):
        widget._cache.clear()
        results["K slider move (adapt + draw)"].append(timed(lambda: setattr(widget.k_slider, "value", 1 + (widget.k_slider.value + 6) % MAX_K)))
        results["steps slider move (draw)"].append(timed(lambda: setattr(widget.steps_slider, "value", (widget.steps_slider.value + 3) % (MAX_STEPS + 1))))
        results["new task button"].append(timed(lambda: widget._on_new_task(widget.new_task_button)))
    print(f"{'interaction':32s} {'median ms':>10s} {'max ms':>8s}   target <= 100 ms")
    for name, values in results.items():
        print(f"{name:32s} {statistics.median(values):10.1f} {max(values):8.1f}")


if __name__ == "__main__":
    main()
