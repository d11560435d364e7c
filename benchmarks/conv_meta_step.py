"""Seconds, GFLOPS and peak memory of a conv-net meta-iteration: the training path against the eager baseline.

For each cell (helpers.experiments.FEWSHOT_CELLS: its α, steps, meta-batch and training query size) and
order, in one process, interleaved, median over rounds:

* seconds per meta-iteration (gradient + Adam step) of each variant;
* its speed-up over the eager baseline: the paper's net as written (NCHW, batch norm in plain tensor ops,
  ReLU before max-pool; `helpers.models.as_the_paper_writes_it`) with the cell's task batching, which is
  the path every cell trained with before the fast paths;
* achieved GFLOPS (convolutions and matrix products counted by torch's FlopCounterMode over one
  meta-gradient) and that as a percentage of the fp32 matrix-multiply throughput measured in the same run;
* peak memory that two iterations add, each variant in a fresh process (--no-memory skips it).

    OMNIGLOT_DIR=/path/to/omniglot MINIIMAGENET_DIR=/path/to/miniimagenet \
        python benchmarks/conv_meta_step.py [--device cuda] [--cells ...] [--variants ...] [--order both]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from functools import partial
from unittest import mock
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

import helpers.maml
from helpers.cost import peak_mib_added
from helpers.episodes import sample_episodes
from helpers.experiments import FEWSHOT_CELLS, MAMLSettings, fewshot_images, fewshot_model, maml_objective
from helpers.models import as_the_paper_writes_it

CELLS = ("omniglot_5way_1shot", "omniglot_5way_5shot", "omniglot_20way_1shot", "omniglot_20way_5shot",
         "miniimagenet_5way_1shot", "miniimagenet_5way_5shot")
BASELINE = "eager baseline"
Step = Callable[[], None]


def setup(cell: str, device: str, n_query: int | None, first_order: bool):
    c = FEWSHOT_CELLS[cell]
    torch.manual_seed(0)
    model = fewshot_model(c, first_order).to(device)  # the memory format its training would use
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = fewshot_images(c.dataset, "train")
    generator = torch.Generator().manual_seed(0)
    query = n_query or c.n_query

    def tasks():
        return sample_episodes(images, c.meta_batch_size, c.n_way, c.k_shot, query, generator=generator,
                               rotate=c.dataset == "omniglot").to(device)
    return model, optimizer, tasks


def objective_step(cell: str, first_order: bool, device: str, n_query: int | None, task_batching: str | None = None,
                   baseline: bool = False, channels_last: bool | None = None, formulas: bool | None = None) -> Step:
    """As helpers.train steps: the objective's own gradient, then Adam. `baseline`: the paper's net as written;
    `channels_last` and `formulas` (batch norm's double backward) override what training would choose."""
    c = FEWSHOT_CELLS[cell]
    model, optimizer, tasks = setup(cell, device, n_query, first_order)
    if channels_last is not None:
        model.channels_last = channels_last
    if formulas is not None:
        model.double_backward_formulas = formulas
    run_model = as_the_paper_writes_it(model) if baseline else model  # same parameters, other code path
    settings = MAMLSettings(c.inner_lr, c.n_inner_steps, c.meta_batch_size, c.k_shot, n_query or c.n_query,
                            first_order, task_batching or c.task_batching)
    objective = maml_objective(run_model, settings, loss_fn=F.cross_entropy)
    params = dict(model.named_parameters())

    def step() -> None:
        grads, _ = objective.gradient(params, tasks())
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()
    return step


def functorch_inner_gradient(support_loss, moving, fixed, first_order):
    """The inner gradient as it was taken everywhere before helpers.maml.inner_gradient: torch.func.grad, then
    detached for first order."""
    grads = torch.func.grad(support_loss)(moving, fixed)
    return {name: g.detach() for name, g in grads.items()} if first_order else grads


def functorch_inner_step(cell: str, first_order: bool, device: str, n_query: int | None) -> Step:
    """The training path with torch.func.grad for the inner gradient outside vmap too."""
    step = objective_step(cell, first_order, device, n_query, "loop")

    def patched() -> None:
        with mock.patch.object(helpers.maml, "inner_gradient", functorch_inner_gradient):
            step()
    return patched


def plain_step(cell: str, first_order: bool, device: str, n_query: int | None) -> Step:
    """Algorithm 1 with nothing but autograd.grad, one task at a time, on the paper's net as written."""
    c = FEWSHOT_CELLS[cell]
    model, optimizer, tasks = setup(cell, device, n_query, first_order)
    net = as_the_paper_writes_it(model)
    params = dict(model.named_parameters())

    def step() -> None:
        episodes = tasks()
        optimizer.zero_grad()
        for i in range(c.meta_batch_size):
            fast = params
            for _ in range(c.n_inner_steps):
                loss = F.cross_entropy(functional_call(net, fast, (episodes.x_support[i],)), episodes.y_support[i])
                grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
                fast = {k: p - c.inner_lr * g for (k, p), g in zip(fast.items(), grads)}
            query = F.cross_entropy(functional_call(net, fast, (episodes.x_query[i],)), episodes.y_query[i])
            (query / c.meta_batch_size).backward()
        optimizer.step()
    return step


def higher_step(cell: str, first_order: bool, device: str, n_query: int | None) -> Step:
    import higher

    c = FEWSHOT_CELLS[cell]
    model, optimizer, tasks = setup(cell, device, n_query, first_order)
    net = as_the_paper_writes_it(model)
    inner = torch.optim.SGD(net.parameters(), lr=c.inner_lr)

    def step() -> None:
        episodes = tasks()
        optimizer.zero_grad()
        for i in range(c.meta_batch_size):
            with higher.innerloop_ctx(net, inner, copy_initial_weights=False,
                                      track_higher_grads=not first_order) as (fmodel, diffopt):
                for _ in range(c.n_inner_steps):
                    diffopt.step(F.cross_entropy(fmodel(episodes.x_support[i]), episodes.y_support[i]))
                (F.cross_entropy(fmodel(episodes.x_query[i]), episodes.y_query[i]) / c.meta_batch_size).backward()
        for p, q in zip(model.parameters(), net.parameters()):
            p.grad = q.grad
        optimizer.step()
        net.zero_grad()
    return step


def learn2learn_step(cell: str, first_order: bool, device: str, n_query: int | None) -> Step:
    import learn2learn

    c = FEWSHOT_CELLS[cell]
    model, optimizer, tasks = setup(cell, device, n_query, first_order)
    maml = learn2learn.algorithms.MAML(as_the_paper_writes_it(model), lr=c.inner_lr, first_order=first_order)

    def step() -> None:
        episodes = tasks()
        maml.zero_grad()
        for i in range(c.meta_batch_size):
            learner = maml.clone()
            for _ in range(c.n_inner_steps):
                learner.adapt(F.cross_entropy(learner(episodes.x_support[i]), episodes.y_support[i]))
            (F.cross_entropy(learner(episodes.x_query[i]), episodes.y_query[i]) / c.meta_batch_size).backward()
        for p, q in zip(model.parameters(), maml.module.parameters()):
            p.grad = q.grad
        optimizer.step()
    return step


VARIANTS: dict[str, Callable[[str, bool, str, int | None], Step]] = {  # (cell, first_order, device, n_query)
    BASELINE: partial(objective_step, baseline=True),
    "helpers (loop)": partial(objective_step, task_batching="loop"),
    "helpers (vmap)": partial(objective_step, task_batching="vmap"),
    "loop, channels-last": partial(objective_step, task_batching="loop", channels_last=True),
    "loop, NCHW": partial(objective_step, task_batching="loop", channels_last=False),
    "loop, batch-norm formulas": partial(objective_step, task_batching="loop", formulas=True),
    "loop, torch's double backward": partial(objective_step, task_batching="loop", formulas=False),
    "loop, channels-last, torch's double backward": partial(objective_step, task_batching="loop", channels_last=True,
                                                            formulas=False),
    "loop, NCHW, torch's double backward": partial(objective_step, task_batching="loop", channels_last=False,
                                                   formulas=False),
    "loop, torch.func.grad inner gradient": functorch_inner_step,
    "plain loop": plain_step,
    "higher": higher_step,
    "learn2learn": learn2learn_step,
}
DEFAULT_VARIANTS = (BASELINE, "helpers (loop)", "helpers (vmap)")


def gflop_per_iteration(cell: str, first_order: bool, device: str, n_query: int | None) -> float:
    """Convolutions and matrix products in one meta-iteration, as torch's FlopCounterMode counts them (every variant
    does the same arithmetic, so one count serves them all)."""
    step = objective_step(cell, first_order, device, n_query, "loop")
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def matmul_gflops(device: str, size: int = 2048, repeats: int = 5) -> float:
    """fp32 matrix-multiply throughput of this machine now: the peak the cells are measured against."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    times = []
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times[1:]) / 1e9


def conv_gflops(cell: str, device: str, repeats: int = 5) -> float:
    """Forward throughput of the cell's costliest convolution (its second layer) at the query batch, in the memory
    format its net evaluates in."""
    c = FEWSHOT_CELLS[cell]
    model = fewshot_model(c, first_order=True).to(device)
    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][1]
    size = 14 if c.dataset == "omniglot" else 42
    batch = c.n_way * max(c.n_query, 5)
    x = torch.randn(batch, conv.in_channels, size, size, device=device)
    if device == "cpu" and model.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter:
        F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return counter.get_total_flops() / statistics.median(times[1:]) / 1e9


def measure_peak_mib(variant: str, cell: str, first_order: bool, device: str, n_query: int | None) -> float:
    """Peak memory that 2 iterations add on top of the set-up process (model, optimizer, data set loaded)."""
    step = VARIANTS[variant](cell, first_order, device, n_query)

    def two_steps() -> None:
        step()
        step()
    return peak_mib_added(two_steps, device)


def peak_memory_mib(variant: str, cell: str, first_order: bool, device: str, n_query: int | None) -> float:
    """`measure_peak_mib` in a fresh process, so that no other variant's memory is counted."""
    code = (f"import sys, json, torch; torch.set_num_threads({torch.get_num_threads()}); "
            f"sys.path.insert(0, 'benchmarks'); import conv_meta_step as b; "
            f"print(json.dumps(b.measure_peak_mib({variant!r}, {cell!r}, {first_order}, {device!r}, {n_query!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  (memory of {variant} failed: {out.stderr.strip().splitlines()[-1:]})")
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1, help="meta-iterations per variant per round")
    parser.add_argument("--query", type=int, help="query images per class (default: each cell's training shape)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--order", choices=["second", "first", "both"], default="both")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=sorted(FEWSHOT_CELLS))
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    variants = [BASELINE] + [v for v in args.variants if v != BASELINE]
    peak = matmul_gflops(args.device)
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads; "
          f"fp32 matmul 2048x2048: {peak:.0f} GFLOPS")
    orders = {"second": [False], "first": [True], "both": [False, True]}[args.order]
    for cell in args.cells:
        c = FEWSHOT_CELLS[cell]
        for first_order in orders:
            gflop = gflop_per_iteration(cell, first_order, args.device, args.query)
            steps: dict[str, Step] = {}
            for name in variants:
                try:
                    steps[name] = VARIANTS[name](cell, first_order, args.device, args.query)
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
            peak_now = matmul_gflops(args.device)  # measured again after the cell, beside its iterations
            peak_cell = statistics.median([peak, peak_now])
            base = statistics.median(times[BASELINE])
            order = "first order" if first_order else "second order"
            print(f"\n{cell}, {order} ({c.n_query} query/class unless --query; {gflop:.1f} GFLOP per iteration; "
                  f"matmul now {peak_now:.0f} GFLOPS, its conv {conv_gflops(cell, args.device):.0f} GFLOPS; "
                  f"training uses {c.task_batching})")
            print(f"  {'variant':46s} {'s/it':>8s} {'speed-up':>9s} {'GFLOPS':>7s} {'% peak':>7s} {'+peak MiB':>10s}")
            for name, values in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
                seconds = statistics.median(values)
                memory = float("nan") if args.no_memory else peak_memory_mib(name, cell, first_order, args.device,
                                                                             args.query)
                print(f"  {name:46s} {seconds:8.3f} {base / seconds:9.2f} {gflop / seconds:7.1f} "
                      f"{100 * gflop / seconds / peak_cell:7.1f} {memory:10.0f}", flush=True)


if __name__ == "__main__":
    main()
