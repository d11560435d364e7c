"""Milliseconds per meta-iteration on a GPU: the training path (vmap, one CUDA graph) against the paths before it.

For each Table 1 cell at its training shape (random pixels; meta-batch, N, K, query count, α and steps from
helpers.experiments.FEWSHOT_CELLS) and each order, in one process, median over rounds of a full iteration
(meta-gradient, clipping where the cell clips, fused Adam step):

* ``loop``: tasks one by one, eager (what training ran on CUDA before);
* ``vmap``: tasks under torch.func.vmap, eager;
* ``graph``: vmap replayed from one captured CUDA graph (helpers.cuda_graph): the training path;
* ``graph tf32``: the same with TF32 allowed in convolutions and matrix products (torch's default for cuDNN).

Then each path's float32 meta-gradient error against the paper's net in float64 (relative, whole gradient, one
meta-batch), beside the error of the paper's net run plainly in float32 on the same card (the floor any float32
path shares: second-order float32 gradients of real-sized batches are ill-conditioned), and the fp32
matrix-multiply throughput measured in the same run.

    python benchmarks/cuda_training_step.py [--cells ...] [--rounds 5] [--iterations 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import InnerLoop, TaskBatch, meta_gradient  # noqa: E402
from helpers.cuda_graph import GraphedGradient  # noqa: E402
from helpers.experiments import FEWSHOT_CELLS, fewshot_model  # noqa: E402
from helpers.fast_paths import float32_numerics  # noqa: E402
from helpers.models import as_the_paper_writes_it  # noqa: E402
from helpers.train import apply_meta_gradient  # noqa: E402

CELLS = ("omniglot_5way_1shot", "omniglot_5way_5shot", "omniglot_20way_1shot", "omniglot_20way_5shot",
         "miniimagenet_5way_1shot", "miniimagenet_5way_5shot")
PATHS = ("loop", "vmap", "graph", "graph tf32")


def episodes(cell, n_tasks: int, seed: int, device) -> TaskBatch:
    size, channels = (28, 1) if cell.dataset == "omniglot" else (84, 3)
    g = torch.Generator().manual_seed(seed)
    shape = lambda count: (n_tasks, cell.n_way * count, channels, size, size)  # noqa: E731
    labels = lambda count: torch.arange(cell.n_way).repeat_interleave(count).expand(n_tasks, -1)  # noqa: E731
    return TaskBatch(torch.rand(shape(cell.k_shot), generator=g), labels(cell.k_shot),
                     torch.rand(shape(cell.n_query), generator=g), labels(cell.n_query)).to(device)


def matmul_tflops(device, n: int = 8192, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    with float32_numerics(device):
        a @ b
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        torch.cuda.synchronize()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def flat(grads) -> torch.Tensor:
    return torch.cat([g.detach().double().flatten() for g in grads.values()])


def measure(name: str, first_order: bool, device, rounds: int, iterations: int) -> dict:
    cell = FEWSHOT_CELLS[name]
    inner = InnerLoop(cell.inner_lr, cell.n_inner_steps, first_order, loss_fn=F.cross_entropy)
    torch.manual_seed(0)
    model = fewshot_model(cell, first_order).to(device)
    params = dict(model.named_parameters())
    initial = {k: v.detach().clone() for k, v in params.items()}
    batches = [episodes(cell, cell.meta_batch_size, seed, device) for seed in range(4)]

    # errors first, at the initial weights, on one meta-batch
    reference_net = as_the_paper_writes_it(model).double()
    reference_params = {k: v.double().requires_grad_() for k, v in initial.items()}
    reference = flat(meta_gradient(reference_net, reference_params, batches[0].to(dtype=torch.float64), inner,
                                   task_batching="loop")[0])
    errors = {}
    with float32_numerics(device):
        plain32 = flat(meta_gradient(as_the_paper_writes_it(model), params, batches[0], inner,
                                     task_batching="loop")[0])
    errors["plain float32 loop"] = float((plain32 - reference).norm() / reference.norm())

    results = {"cell": name, "order": "first" if first_order else "second", "ms": {}, "error": errors}
    for path in PATHS:
        batching = "loop" if path == "loop" else "vmap"
        plain = lambda p, b, batching=batching: meta_gradient(model, p, b, inner, task_batching=batching)  # noqa
        fn = GraphedGradient(plain) if path.startswith("graph") else plain
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        tf32 = path.endswith("tf32")
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32

        def step(batch):
            grads, _ = fn(params, batch)
            apply_meta_gradient(model, params, grads, optimizer, cell.clip_grad_value)
            return grads

        with torch.no_grad():
            for key, p in params.items():
                p.copy_(initial[key])
        grads = step(batches[0])  # first call (captures a graph) at the initial weights: its error
        errors[path] = float((flat(grads) - reference).norm() / reference.norm())
        slow = path == "loop"
        n_rounds, n_its = (2, 2) if slow else (rounds, iterations)
        for i in range(2):
            step(batches[i % len(batches)])
        times = []
        for _ in range(n_rounds):
            torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(n_its):
                step(batches[i % len(batches)])
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) / n_its * 1e3)
        results["ms"][path] = statistics.median(times)
        del fn, optimizer
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # torch's defaults
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--orders", nargs="+", default=["second", "first"], choices=["second", "first"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 0
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | fp32 matmul (TF32 off) "
          f"{matmul_tflops(device):.1f} TFLOPS", flush=True)
    rows = []
    for name in args.cells:
        for order in args.orders:
            row = measure(name, order == "first", device, args.rounds, args.iterations)
            rows.append(row)
            ms, err = row["ms"], row["error"]
            print(f"{name:22s} {order:6s} ms/it " + " ".join(f"{p} {ms[p]:7.1f}" for p in PATHS)
                  + f" | graph vs loop {ms['loop'] / ms['graph']:.1f}x | error " +
                  " ".join(f"{p} {err[p]:.1e}" for p in ("plain float32 loop", *PATHS)), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
