"""Milliseconds per widget interaction (adapt + redraw): notebook 01's widget (MAML) and notebook 02's (MAML,
pretrained and oracle side by side).

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


def load(name: str):
    model = load_checkpoint(get_experiment(name).checkpoint_path).build_model()
    return model, {k: v.detach() for k, v in model.named_parameters()}


def measure(widget: SinusoidAdaptationWidget, repeats: int) -> dict[str, list[float]]:
    def timed(action) -> float:
        started = time.perf_counter()
        action()
        return (time.perf_counter() - started) * 1e3

    results: dict[str, list[float]] = {"K slider move (adapt + draw)": [], "steps slider move (draw)": [],
                                       "new task button": []}
    for _ in range(repeats):
        widget._cache.clear()
        next_k = 1 + (widget.k_slider.value + 6) % MAX_K
        results["K slider move (adapt + draw)"].append(timed(lambda: setattr(widget.k_slider, "value", next_k)))
        next_steps = (widget.steps_slider.value + 3) % (MAX_STEPS + 1)
        results["steps slider move (draw)"].append(timed(lambda: setattr(widget.steps_slider, "value", next_steps)))
        results["new task button"].append(timed(lambda: widget._on_new_task(widget.new_task_button)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    maml, pretrained, oracle = load("sinusoid_maml"), load("sinusoid_pretrained"), load("sinusoid_oracle")
    widgets = {
        "notebook 01 (MAML)": SinusoidAdaptationWidget([Learner("MAML", *maml, inner_lr=0.01)]),
        "notebook 02 (MAML, pretrained, oracle)": SinusoidAdaptationWidget(
            [Learner("MAML", *maml, inner_lr=0.01), Learner("pretrained", *pretrained, inner_lr=0.02),
             Learner("oracle", *oracle, inner_lr=0.01, sees_task=True)], half_range_toggle=True),
    }
    print(f"{'widget':40s} {'interaction':30s} {'median ms':>10s} {'max ms':>8s}   target <= 100 ms")
    for widget_name, widget in widgets.items():
        for name, values in measure(widget, args.repeats).items():
            print(f"{widget_name:40s} {name:30s} {statistics.median(values):10.1f} {max(values):8.1f}")


if __name__ == "__main__":
    main()
