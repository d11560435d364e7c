"""Where a conv-net meta-iteration spends its time: torch.profiler around the training loop's own gradient.

Prints, per cell and order, the operators with the most self time (grouped by name) and the share of
the wall time each group takes: convolutions forward and backward, batch norm, pooling, elementwise work.

    OMNIGLOT_DIR=... MINIIMAGENET_DIR=... python benchmarks/profile_meta_step.py --cells miniimagenet_5way_1shot
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from helpers.episodes import sample_episodes
from helpers.experiments import FEWSHOT_CELLS, MAMLSettings, fewshot_images, fewshot_model, maml_objective
from helpers.models import as_the_paper_writes_it


def build(cell: str, first_order: bool, task_batching: str | None, device: str, baseline: bool = False):
    c = FEWSHOT_CELLS[cell]
    torch.manual_seed(0)
    model = fewshot_model(c, first_order).to(device)
    model = as_the_paper_writes_it(model) if baseline else model
    settings = MAMLSettings(c.inner_lr, c.n_inner_steps, c.meta_batch_size, c.k_shot, c.n_query, first_order,
                            task_batching or c.task_batching)
    objective = maml_objective(model, settings, loss_fn=F.cross_entropy)
    images = fewshot_images(c.dataset, "train")
    generator = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())

    def step() -> None:
        tasks = sample_episodes(images, c.meta_batch_size, c.n_way, c.k_shot, c.n_query, generator=generator,
                                rotate=c.dataset == "omniglot").to(device)
        objective.gradient(params, tasks)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["miniimagenet_5way_1shot"], choices=sorted(FEWSHOT_CELLS))
    parser.add_argument("--order", choices=["second", "first", "both"], default="both")
    parser.add_argument("--task-batching", choices=["vmap", "loop"])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", action="store_true", help="the paper's net as written (no fast paths)")
    args = parser.parse_args()
    orders = {"second": [False], "first": [True], "both": [False, True]}[args.order]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for cell in args.cells:
        for first_order in orders:
            step = build(cell, first_order, args.task_batching, args.device, args.baseline)
            step()  # warm-up
            started = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.iterations):
                    step()
            wall = (time.perf_counter() - started) / args.iterations
            totals: dict[str, float] = defaultdict(float)
            counts: dict[str, int] = defaultdict(int)
            for event in prof.key_averages():
                totals[event.key] += event.self_cpu_time_total / 1e6 / args.iterations
                counts[event.key] += event.count // args.iterations
            order = "first order" if first_order else "second order"
            path = "eager baseline" if args.baseline else "training path"
            print(f"\n{cell}, {order}, {path}: {wall:.3f} s per meta-iteration under the profiler")
            print(f"  {'operator':48s} {'self s/it':>10s} {'% wall':>7s} {'calls/it':>9s}")
            for key, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:args.rows]:
                print(f"  {key:48s} {seconds:10.4f} {100 * seconds / wall:7.1f} {counts[key]:9d}")


if __name__ == "__main__":
    main()
