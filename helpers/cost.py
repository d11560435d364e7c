"""What one meta-iteration of a few-shot cell costs: seconds, and the peak memory it adds, in a fresh process.

Memory is measured in its own process because an allocator keeps what earlier
work freed: in a notebook that has already trained or scored, a second
measurement would see little growth. CPU: the resident-set high-water mark,
reset after set-up (Linux /proc/self/clear_refs); CUDA: the allocator's peak.

    python -m helpers.cost miniimagenet_5way_1shot --meta-batch-size 1
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from .device import machine_name


@dataclass(frozen=True)
class MetaStepCost:
    seconds: float  # one meta-iteration (gradient + Adam step), the median after the first, so set-up is left out
    peak_mib: float  # what the first iteration added to the process's peak memory
    meta_batch_size: int


def _status_kib(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def peak_mib_added(work: Callable[[], None], device: str = "cpu") -> float:
    """How far `work()` raises this process's peak memory above what it holds now, in MiB.

    CPU: the resident-set high-water mark, reset first (Linux /proc/self/clear_refs); CUDA: the allocator's peak.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _status_kib("VmRSS") * 1024
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
    work()
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else _status_kib("VmHWM") * 1024
    return (peak - before) / 2**20


def measure_here(experiment: str, *, meta_batch_size: int | None = None, first_order: bool | None = None,
                 n_inner_steps: int | None = None, device: str = "cpu", seed: int = 0,
                 repeats: int = 1) -> MetaStepCost:
    """1 + `repeats` meta-iterations in this process: the first for memory, the median of the others for time.

    `experiment` is a few-shot cell or "sinusoid_maml"; `meta_batch_size`,
    `first_order` and `n_inner_steps` override its own settings.
    """
    from .episodes import sample_episodes
    from .experiments import FEWSHOT_CELLS, fewshot_images, fewshot_model, get_experiment, maml_objective
    from .tasks import sample_sinusoid_tasks

    exp = get_experiment(experiment)
    cell = FEWSHOT_CELLS.get(experiment)
    if cell is None and experiment != "sinusoid_maml":
        raise ValueError(f"{experiment!r} is neither a few-shot cell nor sinusoid_maml; "
                         f"known: {sorted(FEWSHOT_CELLS)}")
    model = exp.new_model(seed).to(device)
    params = dict(model.named_parameters())
    objective = exp.make_objective(model)
    overrides = {"first_order": first_order, "n_inner_steps": n_inner_steps}
    settings = replace(objective.settings, **{k: v for k, v in overrides.items() if v is not None})
    objective = maml_objective(model, settings, loss_fn=objective.inner.loss_fn)
    if cell is not None:  # the fast paths this order trains with
        fast = fewshot_model(cell, settings.first_order)
        model.channels_last, model.double_backward_formulas = fast.channels_last, fast.double_backward_formulas
    n_tasks = meta_batch_size or settings.meta_batch_size  # fewer tasks: a looped meta-batch costs per task
    generator = torch.Generator().manual_seed(seed)
    if cell is None:
        batches = [sample_sinusoid_tasks(n_tasks, settings.k_shot, settings.n_query, generator=generator).to(device)
                   for _ in range(1 + repeats)]
    else:
        images = fewshot_images(cell.dataset, "train")
        batches = [sample_episodes(images, n_tasks, cell.n_way, cell.k_shot, cell.n_query, generator=generator,
                                   rotate=cell.dataset == "omniglot").to(device) for _ in range(1 + repeats)]
    optimizer = torch.optim.Adam(model.parameters(), lr=exp.train_config.meta_lr)

    def step(batch) -> None:
        grads, _ = objective.gradient(params, batch)
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()

    peak_mib = peak_mib_added(lambda: step(batches[0]), device)
    seconds = []
    for batch in batches[1:]:
        started = time.perf_counter()
        step(batch)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return MetaStepCost(sorted(seconds)[len(seconds) // 2], peak_mib, n_tasks)


STEPS_MEASURED = (1, 2, 3, 5, 7, 10)


def steps_cost_table(experiments: tuple[str, ...] = ("sinusoid_maml", "omniglot_5way_1shot"),
                     steps: tuple[int, ...] = STEPS_MEASURED, device: str = "cpu", threads: int = 1,
                     progress: bool = True) -> dict:
    """Seconds and peak memory of one meta-iteration against inner steps, second and first order (notebook 05).

    Each point is its own fresh process (`meta_iteration_cost`) at the experiment's training meta-batch; its time
    is the median of 20 iterations (sinusoid) or 5 (conv net) after a first that sets up and measures memory.
    """
    rows = []
    for experiment in experiments:
        for first_order in (False, True):
            for n_steps in steps:
                cost = meta_iteration_cost(experiment, first_order=first_order, n_inner_steps=n_steps,
                                           device=device, threads=threads,
                                           repeats=20 if experiment.startswith("sinusoid") else 5)
                rows.append({"experiment": experiment, "first_order": first_order, "inner_steps": n_steps,
                             "seconds": round(cost.seconds, 5), "peak_mib": round(cost.peak_mib, 2),
                             "meta_batch_size": cost.meta_batch_size})
                if progress:
                    order = "first" if first_order else "second"
                    print(f"{experiment:22s} {order:6s} order, {n_steps:2d} steps: {cost.seconds:8.4f} s, "
                          f"+{cost.peak_mib:8.1f} MiB", flush=True)
    return {"device": device, "machine": machine_name(torch.device(device)), "threads": threads,
            "torch": torch.__version__, "rows": rows}


def meta_iteration_cost(experiment: str, *, meta_batch_size: int | None = None, first_order: bool | None = None,
                        n_inner_steps: int | None = None, device: str = "cpu",
                        threads: int | None = None, repeats: int = 1) -> MetaStepCost:
    """`measure_here` in a fresh Python process, so that nothing this process did is counted."""
    command = [sys.executable, "-m", "helpers.cost", experiment, "--device", device]
    if meta_batch_size is not None:
        command += ["--meta-batch-size", str(meta_batch_size)]
    if first_order is not None:
        command += ["--first-order" if first_order else "--second-order"]
    if n_inner_steps is not None:
        command += ["--inner-steps", str(n_inner_steps)]
    if threads is not None:
        command += ["--threads", str(threads)]
    command += ["--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {experiment} failed:\n{done.stderr.strip()[-2000:]}")
    return MetaStepCost(**json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment")
    parser.add_argument("--meta-batch-size", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=1, help="timed iterations (the median is reported)")
    parser.add_argument("--inner-steps", type=int)
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--first-order", dest="first_order", action="store_true", default=None)
    order.add_argument("--second-order", dest="first_order", action="store_false")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cost = measure_here(args.experiment, meta_batch_size=args.meta_batch_size, first_order=args.first_order,
                        n_inner_steps=args.inner_steps, device=args.device, repeats=args.repeats)
    print(json.dumps(cost.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
