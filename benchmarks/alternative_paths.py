"""Two ways to a conv-net meta-gradient that were measured and not taken, kept so the measurement can be repeated.

* **Grouped convolution over tasks.** All tasks of a meta-batch run as one wide network: task t's images sit
  in channels [t·C, (t+1)·C), each convolution has ``groups=tasks``, batch norm is torch's fused kernel over
  tasks × channels (per-channel statistics are exactly per-task statistics), and the head is a batched matrix
  product. The inner loop differentiates the sum of the tasks' losses with respect to the tasks' own copies of
  θ (θ expanded along a task axis), so each copy gets its own task's gradient. This is what ``vmap`` does to a
  convolution, but with the fused batch-norm kernel, whose second derivatives are then right.
* **torch.compile of one task's meta-gradient**: ``torch.compile(grad_and_value(per-task query loss))``,
  looped over tasks, as the sinusoid compiles its whole meta-gradient.

For each cell, on real episodes at the training shape: the relative error of each path's float32 meta-gradient
against the float64 plain autograd loop on the same batch, its compile time, and seconds per meta-gradient
interleaved with the training path and the eager baseline (median over rounds). The eager paths' own float32
error is the yardstick. On real images a float32 path can land 1-9% from float64 with nothing wrong: on one
Omniglot 20-way batch, after a single inner step, the training path agreed with float64 to 2e-6 while the eager
baseline was 6% away, all of it from one task of 16 (its query loss 2.9031 against 2.9014), in which a
pre-ReLU activation sat within 1e-6 of the kink; after 5 steps every float32 path was 1-9% away. ::

    OMNIGLOT_DIR=... MINIIMAGENET_DIR=... python benchmarks/alternative_paths.py --cells omniglot_20way_1shot

What it showed is in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from unittest import mock
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, grad_and_value

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import models  # noqa: E402
from helpers.batches import TaskBatch  # noqa: E402
from helpers.maml import InnerLoop, Params, meta_gradient, query_loss_after_adaptation  # noqa: E402
from helpers.models import BatchStatsNorm2d, ConvNet, as_the_paper_writes_it  # noqa: E402

Gradient = Callable[[Params, TaskBatch], tuple[Params, Tensor]]


def grouped_forward(model: ConvNet, params: Params, x: Tensor) -> Tensor:
    """Logits (tasks, N, n_way) of `model` with task t's parameters `params[name][t]` on its images `x[t]`."""
    n_tasks, n_images = x.shape[:2]
    h = x.transpose(0, 1).reshape(n_images, n_tasks * x.shape[2], *x.shape[3:])
    for index, module in enumerate(model.features):
        name = f"features.{index}"
        if isinstance(module, nn.Conv2d):
            weight = params[f"{name}.weight"]
            h = F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), params[f"{name}.bias"].reshape(-1),
                         module.stride, module.padding, groups=n_tasks)
        elif isinstance(module, BatchStatsNorm2d):
            h = F.batch_norm(h, None, None, params[f"{name}.weight"].reshape(-1), params[f"{name}.bias"].reshape(-1),
                             training=True, eps=module.eps)
        elif isinstance(module, nn.MaxPool2d):
            h = F.max_pool2d(h, 2)
        elif isinstance(module, nn.ReLU):
            h = F.relu(h)
        elif not isinstance(module, nn.Flatten):
            raise TypeError(f"grouped_forward does not know {type(module).__name__}")
    h = h.reshape(n_images, n_tasks, -1).transpose(0, 1)  # per image: (C, h, w) flattened, as nn.Flatten does
    return torch.baddbmm(params["classifier.bias"][:, None, :], h, params["classifier.weight"].transpose(1, 2))


def grouped_meta_gradient(model: ConvNet, params: Params, tasks: TaskBatch, inner: InnerLoop) -> tuple[Params, Tensor]:
    """MAML's meta-gradient (mean over tasks) with every task in one grouped-convolution network."""
    n_tasks = len(tasks)
    per_task = {name: p.expand(n_tasks, *p.shape) for name, p in params.items()}

    def summed_support_loss(weights: Params) -> Tensor:  # Σ over tasks of each task's mean loss
        logits = grouped_forward(model, weights, tasks.x_support)
        return inner.loss_fn(logits.flatten(0, 1), tasks.y_support.flatten()) * n_tasks

    support_grad = grad(summed_support_loss)
    for _ in range(inner.steps):
        grads = support_grad(per_task)
        if inner.first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        per_task = {name: p - inner.lr * grads[name] for name, p in per_task.items()}
    logits = grouped_forward(model, per_task, tasks.x_query)
    loss = inner.loss_fn(logits.flatten(0, 1), tasks.y_query.flatten())  # equal query sizes: the mean of means
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())))), loss.detach()


def compiled_meta_gradient(model: ConvNet, inner: InnerLoop) -> Gradient:
    """One task's (gradient, loss) compiled once (every task has the same shapes), looped over the meta-batch."""
    def one_task(params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        return query_loss_after_adaptation(model, params, xs, ys, xq, yq, inner)
    compiled = torch.compile(grad_and_value(one_task), dynamic=False)
    # Dynamo cannot trace `inside_vmap` (it asks functorch's C++ interpreter stack) and would give up on the
    # whole grad transform; nothing here runs under vmap, so the compiled calls see it answer False.
    not_in_vmap = mock.patch.object(models, "inside_vmap", lambda: False)

    def gradient(params: Params, tasks: TaskBatch) -> tuple[Params, Tensor]:
        detached = {name: p.detach() for name, p in params.items()}
        totals = {name: torch.zeros_like(p) for name, p in detached.items()}
        loss = torch.zeros(())
        for task in tasks.tasks():
            with not_in_vmap:
                grads, value = compiled(detached, *task)
            for name in totals:
                totals[name] += grads[name] / len(tasks)
            loss += value.detach() / len(tasks)
        return totals, loss
    return gradient


def error_against_float64(gradient: Gradient, model: ConvNet, tasks: TaskBatch, inner: InnerLoop) -> float:
    """Largest relative error, over parameters, of `gradient` (float32) against the float64 plain loop."""
    params = dict(model.named_parameters())
    ours, _ = gradient(params, tasks)
    reference_model = as_the_paper_writes_it(model).double()
    reference_params = dict(reference_model.named_parameters())
    reference, _ = meta_gradient(reference_model, reference_params, tasks.to(dtype=torch.float64), inner,
                                 task_batching="loop")
    # as tests/test_conv_meta_gradient.py judges float32: conv biases (true gradient 0) on the whole gradient's scale
    floor = 1e-2 * torch.cat([g.flatten() for g in reference.values()]).norm()
    return max(float((ours[n].double() - reference[n]).norm() / reference[n].norm().clamp_min(floor))
               for n in reference)


def main() -> None:
    from conv_meta_step import CELLS, setup  # the benchmark's own cells and real episodes
    from helpers.experiments import FEWSHOT_CELLS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=["omniglot_20way_1shot"])
    parser.add_argument("--order", choices=("second", "first"), default="second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled path (minutes to compile)")
    args = parser.parse_args()
    first_order = args.order == "first"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.order} order", flush=True)
    for cell in args.cells:
        c = FEWSHOT_CELLS[cell]
        model, _, sample = setup(cell, "cpu", None, first_order)
        tasks = sample()
        inner = InnerLoop(c.inner_lr, c.n_inner_steps, first_order, F.cross_entropy)
        params = dict(model.named_parameters())
        baseline = as_the_paper_writes_it(model)
        paths: dict[str, Gradient] = {
            "eager baseline": lambda p, t: meta_gradient(baseline, p, t, inner, task_batching=c.task_batching),
            "training path": lambda p, t: meta_gradient(model, p, t, inner, task_batching=c.task_batching),
            "grouped convolution": lambda p, t: grouped_meta_gradient(model, p, t, inner),
        }
        if not args.no_compile:
            paths["compiled per task"] = compiled_meta_gradient(model, inner)
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for name, gradient in paths.items():
            start = time.perf_counter()
            error = error_against_float64(gradient, model, tasks, inner)  # the first call compiles
            print(f"{cell}: {name}: relative error against float64 {error:.1e}, first call and check "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        for _ in range(args.rounds):
            for name, gradient in paths.items():
                start = time.perf_counter()
                gradient(params, tasks)
                seconds[name].append(time.perf_counter() - start)
        base = statistics.median(seconds["eager baseline"])
        for name, times in seconds.items():
            median = statistics.median(times)
            print(f"{cell}: {name:20s} {median:7.3f} s/meta-gradient   speed-up over the eager baseline "
                  f"{base / median:4.2f}x", flush=True)


if __name__ == "__main__":
    main()
