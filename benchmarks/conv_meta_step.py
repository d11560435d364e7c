"""Seconds per conv-net meta-iteration (and peak memory): helpers against a plain loop, `higher`, `learn2learn`.

Cells (helpers.experiments.FEWSHOT_CELLS, their α, steps and meta-batch): Omniglot 5-way 1-shot and 20-way
1-shot, MiniImagenet 5-way 1-shot and 5-way 5-shot; second and first order, with 15 query images per class
(the paper's evaluation shape and MiniImagenet's training shape; the reference code trains Omniglot with K).
Variants run in one process, interleaved; medians and ratios are printed. Peak memory is
measured per variant in a fresh subprocess: what two iterations add on top of the set-up
process (CPU: resident-set high-water mark; CUDA: the allocator's peak).

    OMNIGLOT_DIR=/path/to/omniglot MINIIMAGENET_DIR=/path/to/miniimagenet \
        python benchmarks/conv_meta_step.py [--device cuda] [--rounds 3] [--cells omniglot_5way_1shot ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from helpers.cost import peak_mib_added
from helpers.episodes import sample_episodes
from helpers.experiments import FEWSHOT_CELLS, MAMLSettings, fewshot_images, fewshot_model, maml_objective
from helpers.models import BatchStatsNorm2d

CELLS = ("omniglot_5way_1shot", "omniglot_20way_1shot", "miniimagenet_5way_1shot", "miniimagenet_5way_5shot")
N_QUERY = 15
Step = Callable[[], None]


def settings(cell: str) -> tuple[int, float, int, int]:
    """(n_way, α, inner steps, meta-batch) of a cell, as the paper trains it."""
    c = FEWSHOT_CELLS[cell]
    return c.n_way, c.inner_lr, c.n_inner_steps, c.meta_batch_size


def setup(cell: str, device: str):
    c = FEWSHOT_CELLS[cell]
    torch.manual_seed(0)
    model = fewshot_model(c).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = fewshot_images(c.dataset, "train")
    generator = torch.Generator().manual_seed(0)
    return model, optimizer, lambda: sample_episodes(images, c.meta_batch_size, c.n_way, c.k_shot, N_QUERY,
                                                     generator=generator, rotate=c.dataset == "omniglot").to(device)


def helpers_step(cell: str, first_order: bool, device: str, task_batching: str = "vmap",
                 fused_batch_norm: bool = True) -> Step:
    n_way, inner_lr, steps, batch = settings(cell)
    model, optimizer, tasks = setup(cell, device)
    for module in model.modules():  # False: batch norm in plain tensor ops everywhere, as before the fused kernel
        if isinstance(module, BatchStatsNorm2d):
            module.fused_outside_vmap = fused_batch_norm
    k_shot = FEWSHOT_CELLS[cell].k_shot
    objective = maml_objective(model, MAMLSettings(inner_lr, steps, batch, k_shot, N_QUERY, first_order,
                                                   task_batching), loss_fn=F.cross_entropy)

    params = dict(model.named_parameters())

    def step() -> None:  # as helpers.train steps: the objective's own gradient
        grads, _ = objective.gradient(params, tasks())
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()
    return step


def plain_step(cell: str, first_order: bool, device: str) -> Step:
    n_way, inner_lr, steps, batch = settings(cell)
    model, optimizer, tasks = setup(cell, device)
    params = dict(model.named_parameters())

    def step() -> None:
        episodes = tasks()
        optimizer.zero_grad()
        for i in range(batch):
            fast = params
            for _ in range(steps):
                loss = F.cross_entropy(functional_call(model, fast, (episodes.x_support[i],)), episodes.y_support[i])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
                fast = {k: p - inner_lr * g for (k, p), g in zip(fast.items(), grads)}
            query = F.cross_entropy(functional_call(model, fast, (episodes.x_query[i],)), episodes.y_query[i])
            (query / batch).backward()
        optimizer.step()
    return step


def higher_step(cell: str, first_order: bool, device: str) -> Step:
    import higher

    n_way, inner_lr, steps, batch = settings(cell)
    model, optimizer, tasks = setup(cell, device)
    inner = torch.optim.SGD(model.parameters(), lr=inner_lr)

    def step() -> None:
        episodes = tasks()
        optimizer.zero_grad()
        for i in range(batch):
            with higher.innerloop_ctx(model, inner, copy_initial_weights=False,
                                      track_higher_grads=not first_order) as (fmodel, diffopt):
                for _ in range(steps):
                    diffopt.step(F.cross_entropy(fmodel(episodes.x_support[i]), episodes.y_support[i]))
                (F.cross_entropy(fmodel(episodes.x_query[i]), episodes.y_query[i]) / batch).backward()
        optimizer.step()
    return step


def learn2learn_step(cell: str, first_order: bool, device: str) -> Step:
    import learn2learn

    n_way, inner_lr, steps, batch = settings(cell)
    model, optimizer, tasks = setup(cell, device)
    maml = learn2learn.algorithms.MAML(model, lr=inner_lr, first_order=first_order)

    def step() -> None:
        episodes = tasks()
        optimizer.zero_grad()
        for i in range(batch):
            learner = maml.clone()
            for _ in range(steps):
                learner.adapt(F.cross_entropy(learner(episodes.x_support[i]), episodes.y_support[i]))
            (F.cross_entropy(learner(episodes.x_query[i]), episodes.y_query[i]) / batch).backward()
        optimizer.step()
    return step


VARIANTS = {"helpers (vmap)": helpers_step,
            "helpers (loop)": lambda cell, first_order, device: helpers_step(cell, first_order, device, "loop"),
            "helpers (loop, plain BN)": lambda cell, first_order, device: helpers_step(
                cell, first_order, device, "loop", fused_batch_norm=False),
            "plain loop": plain_step, "higher": higher_step, "learn2learn": learn2learn_step}


def measure_peak_mib(variant: str, cell: str, first_order: bool, device: str) -> float:
    """Peak memory that 2 iterations add on top of the set-up process (model, optimizer, data set loaded)."""
    step = VARIANTS[variant](cell, first_order, device)

    def two_steps() -> None:
        step()
        step()
    return peak_mib_added(two_steps, device)


def peak_memory_mib(variant: str, cell: str, first_order: bool, device: str) -> float:
    """`measure_peak_mib` in a fresh process, so that no other variant's memory is counted."""
    code = (f"import sys, json; sys.path.insert(0, 'benchmarks'); import conv_meta_step as b; "
            f"print(json.dumps(b.measure_peak_mib({variant!r}, {cell!r}, {first_order}, {device!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  (memory of {variant} failed: {out.stderr.strip().splitlines()[-1:]})")
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3, help="meta-iterations per variant per round")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=sorted(FEWSHOT_CELLS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads, {N_QUERY} query/class")
    for cell in args.cells:
        for first_order in (False, True):
            steps: dict[str, Step] = {}
            for name, build in ((name, VARIANTS[name]) for name in args.variants):
                try:
                    steps[name] = build(cell, first_order, args.device)
                    steps[name]()  # warm-up
                except ImportError as error:
                    print(f"  {name}: skipped ({error}; see benchmarks/README.md)")
            times: dict[str, list[float]] = {name: [] for name in steps}
            for _ in range(args.rounds):
                for name, step in steps.items():
                    started = time.perf_counter()
                    for _ in range(args.iterations):
                        step()
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    times[name].append((time.perf_counter() - started) / args.iterations)
            base = statistics.median(times.get("helpers (vmap)") or next(iter(times.values())))
            order = "first order" if first_order else "second order"
            print(f"\n{cell}, {order}: {'median s/it':>12s} {'/ helpers':>10s} {'+peak MiB':>10s}")
            for name, values in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
                memory = float("nan") if args.no_memory else peak_memory_mib(name, cell, first_order, args.device)
                print(f"  {name:26s} {statistics.median(values):12.3f} {statistics.median(values) / base:10.2f} "
                      f"{memory:10.0f}")


if __name__ == "__main__":
    main()
