"""Seconds per sinusoid meta-iteration: helpers against a plain loop, `higher` and `learn2learn`.

One meta-iteration = sample 25 tasks (K=10 support + 10 query), second-order
meta-gradient through 1 inner step (α = 0.01), one Adam step: the paper's
schedule. All variants run in this one process, interleaved round by round,
and the script prints medians and ratios. `higher` and `learn2learn` are used
when they import; otherwise the reason is printed (see benchmarks/README.md).

    python benchmarks/sinusoid_meta_step.py [--rounds 5] [--iterations 100]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value

from helpers import SinusoidMLP, sample_sinusoid_tasks
from helpers.experiments import MAMLSettings, maml_objective

SETTINGS = MAMLSettings(inner_lr=0.01, n_inner_steps=1, meta_batch_size=25, k_shot=10, n_query=10)
Step = Callable[[], None]


def make_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = SinusoidMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)

    def tasks():
        return sample_sinusoid_tasks(SETTINGS.meta_batch_size, SETTINGS.k_shot, SETTINGS.n_query, generator=generator)
    return model, optimizer, tasks


def helpers_step(task_batching: str, compile: bool) -> Step:
    """What `helpers.train` does each iteration."""
    model, optimizer, tasks = make_setup()
    settings = MAMLSettings(**{**SETTINGS.__dict__, "task_batching": task_batching})
    gradient_fn = grad_and_value(maml_objective(model, settings))
    if compile:
        gradient_fn = torch.compile(gradient_fn, dynamic=False)
    params = dict(model.named_parameters())

    def step() -> None:
        grads, _ = gradient_fn({k: p.detach() for k, p in params.items()}, tasks())
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()
    return step


def plain_loop_step() -> Step:
    """Algorithm 1 written directly: a Python loop over tasks and torch.autograd.grad(create_graph=True)."""
    model, optimizer, tasks = make_setup()
    params = dict(model.named_parameters())

    def step() -> None:
        batch = tasks()
        optimizer.zero_grad()
        total = 0.0
        for i in range(len(batch)):
            loss = F.mse_loss(functional_call(model, params, (batch.x_support[i],)), batch.y_support[i])
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            fast = {k: p - SETTINGS.inner_lr * g for (k, p), g in zip(params.items(), grads)}
            total = total + F.mse_loss(functional_call(model, fast, (batch.x_query[i],)), batch.y_query[i])
        (total / len(batch)).backward()
        optimizer.step()
    return step


def higher_step() -> Step:
    import higher

    model, optimizer, tasks = make_setup()
    inner_optimizer = torch.optim.SGD(model.parameters(), lr=SETTINGS.inner_lr)

    def step() -> None:
        batch = tasks()
        optimizer.zero_grad()
        for i in range(len(batch)):
            with higher.innerloop_ctx(model, inner_optimizer, copy_initial_weights=False) as (fmodel, diffopt):
                diffopt.step(F.mse_loss(fmodel(batch.x_support[i]), batch.y_support[i]))
                (F.mse_loss(fmodel(batch.x_query[i]), batch.y_query[i]) / len(batch)).backward()
        optimizer.step()
    return step


def learn2learn_step() -> Step:
    import learn2learn

    model, optimizer, tasks = make_setup()
    maml = learn2learn.algorithms.MAML(model, lr=SETTINGS.inner_lr, first_order=False)

    def step() -> None:
        batch = tasks()
        optimizer.zero_grad()
        for i in range(len(batch)):
            learner = maml.clone()
            learner.adapt(F.mse_loss(learner(batch.x_support[i]), batch.y_support[i]))
            (F.mse_loss(learner(batch.x_query[i]), batch.y_query[i]) / len(batch)).backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100, help="meta-iterations per variant per round")
    args = parser.parse_args()

    variants: dict[str, Step] = {}
    builders = {
        "helpers vmap + torch.compile": lambda: helpers_step("vmap", True),
        "helpers vmap": lambda: helpers_step("vmap", False),
        "helpers loop": lambda: helpers_step("loop", False),
        "plain loop (autograd.grad)": plain_loop_step,
        "higher": higher_step,
        "learn2learn": learn2learn_step,
    }
    for name, build in builders.items():
        try:
            variants[name] = build()
            started = time.perf_counter()
            for _ in range(3):
                variants[name]()  # warm-up (and compilation)
            print(f"{name:30s} ready (warm-up {time.perf_counter() - started:.1f} s)")
        except ImportError as error:
            print(f"{name:30s} skipped: {error} (see benchmarks/README.md)")
            variants.pop(name, None)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            started = time.perf_counter()
            for _ in range(args.iterations):
                step()
            times[name].append((time.perf_counter() - started) / args.iterations)

    medians = {name: statistics.median(t) for name, t in times.items()}
    compiled, eager = medians["helpers vmap + torch.compile"], medians["helpers vmap"]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.rounds} interleaved rounds x {args.iterations} meta-iterations")
    print(f"{'variant':30s} {'median s/it':>12s} {'/ helpers compiled':>19s} {'/ helpers vmap':>15s} {'70k its (min)':>14s}")
    for name, median in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"{name:30s} {median:12.5f} {median / compiled:19.2f} {median / eager:15.2f} {median * 70_000 / 60:14.1f}")


if __name__ == "__main__":
    main()
