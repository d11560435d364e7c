"""The MAML core, written once for any model (Finn et al. 2017, Algorithm 1).

Parameters are a plain ``dict[str, Tensor]`` and the model is only ever called
through ``torch.func.functional_call``, so adapting never mutates the model:

    θ'ᵢ = θ − α ∇θ L_Tᵢ(f_θ)                  (inner loop, on the support set)
    θ  ← θ − β ∇θ Σᵢ L_Tᵢ(f_θ'ᵢ)              (outer loop, on the query set)

How a task is adapted to is one frozen ``InnerLoop``; what it is adapted on is
one ``TaskBatch``. Training, evaluation, baselines, widgets and the variants of
``helpers.algorithms`` (ANIL, Meta-SGD, MAML++, Reptile) all call the same
``adaptation_steps``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
from torch.func import functional_call, grad, vmap

from .batches import TaskBatch
from .checks import check_int_at_least, check_positive

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
TaskBatching = Literal["vmap", "loop"]


@dataclass(frozen=True)
class InnerLoop:
    """How one task is adapted to: `steps` gradient steps of size `lr` on its support loss.

    `first_order` drops the second-order terms (first-order MAML). `adapted`
    names the parameters that move (ANIL: the head only); None moves all.
    """

    lr: float
    steps: int
    first_order: bool = False
    loss_fn: LossFn = F.mse_loss
    adapted: frozenset[str] | None = None

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_int_at_least("steps", self.steps, 0)
        if self.adapted is not None:
            object.__setattr__(self, "adapted", frozenset(self.adapted))
            if not self.adapted:
                raise ValueError("adapted must name at least one parameter, or be None (all adapt)")

    def with_steps(self, steps: int) -> "InnerLoop":
        """The same inner loop run for another number of steps (e.g. 10 at test, 5 in training)."""
        return replace(self, steps=steps)


def task_loss(model: nn.Module, params: Params, x: Tensor, y: Tensor, *, loss_fn: LossFn = F.mse_loss) -> Tensor:
    """L_T(f_params) on one task's examples."""
    return loss_fn(functional_call(model, params, (x,)), y)


def step_rate(rates: Params | None, name: str, step: int, lr: float) -> Tensor | float:
    """Step `step`'s learning rate for parameter `name`: `lr`, or a learned one from `rates`.

    `rates[name]` has a leading step axis: entry i is step i's rate, a scalar
    (MAML++'s per-layer, per-step rates) or one per weight (Meta-SGD); steps past
    the last entry reuse it, so a model trained with 5 steps can be run for 10.
    """
    if rates is None:
        return lr
    rate = rates[name]
    return rate[min(step, rate.shape[0] - 1)]


def inner_gradient(support_loss: Callable[[Params, Params], Tensor], moving: Params, fixed: Params,
                   first_order: bool) -> Params:
    """∇ of ``support_loss(moving, fixed)`` with respect to `moving`, differentiable (unless `first_order`) with
    respect to whatever `moving` and `fixed` depend on.

    Under a torch.func transform (vmap over tasks) this is ``torch.func.grad``, which composes with it. Outside
    any, it is ``torch.autograd.grad(create_graph=not first_order)``: the same numbers (float64 tests) without
    functorch's wrapper around every tensor, and first order then records no graph of the inner backward
    only to detach it (benchmarks/README.md).
    """
    if retrieve_all_functorch_interpreters():
        grads = grad(support_loss)(moving, fixed)
        return {name: g.detach() for name, g in grads.items()} if first_order else grads
    # a graph for the outer gradient only if one is being recorded (evaluation runs under no_grad)
    outer = torch.is_grad_enabled() and any(p.requires_grad for p in (*moving.values(), *fixed.values()))
    with torch.enable_grad():
        leaves = {name: p if p.requires_grad else p.detach().requires_grad_() for name, p in moving.items()}
        loss = support_loss(leaves, fixed)
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=outer and not first_order,
                                    materialize_grads=True)
    return dict(zip(leaves, grads))


def adaptation_steps(model: nn.Module, params: Params, x_support: Tensor, y_support: Tensor, inner: InnerLoop,
                     rates: Params | None = None) -> Iterator[Params]:
    """Yield θ, then θ after each of `inner.steps` gradient steps on one task's support set.

    The gradient comes from ``inner_gradient``, so the same code runs on one task,
    inside ``vmap`` over tasks, and under an outer ``backward()``, which then
    differentiates through the steps (second order). ``first_order`` keeps the
    inner gradients out of that graph: the Hessian-vector terms vanish
    (first-order MAML).
    Parameters outside ``inner.adapted`` stay fixed; ``rates`` (see ``step_rate``)
    replace the fixed ``inner.lr`` with learned ones.
    """
    if inner.adapted is not None and not inner.adapted <= params.keys():
        raise ValueError(f"inner.adapted names parameters the model lacks: {sorted(inner.adapted - params.keys())}")
    adapted = [name for name in params if inner.adapted is None or name in inner.adapted]

    def support_loss(moving: Params, fixed: Params) -> Tensor:
        return task_loss(model, {**fixed, **moving}, x_support, y_support, loss_fn=inner.loss_fn)

    yield params
    for step in range(inner.steps):
        moving = {name: params[name] for name in adapted}
        grads = inner_gradient(support_loss, moving, {name: p for name, p in params.items() if name not in moving},
                               inner.first_order)
        params = {name: p - step_rate(rates, name, step, inner.lr) * grads[name] if name in moving else p
                  for name, p in params.items()}
        yield params


def adapt(model: nn.Module, params: Params, x_support: Tensor, y_support: Tensor, inner: InnerLoop,
          rates: Params | None = None) -> Params:
    """θ' after `inner.steps` gradient steps on one task's support set (a new dict)."""
    for adapted in adaptation_steps(model, params, x_support, y_support, inner, rates):
        pass
    return adapted


def query_loss_after_adaptation(model: nn.Module, params: Params, x_support: Tensor, y_support: Tensor,
                                x_query: Tensor, y_query: Tensor, inner: InnerLoop, *, rates: Params | None = None,
                                step_weights: Tensor | None = None) -> Tensor:
    """L_T(f_θ') for one task: the quantity MAML minimises.

    `step_weights` (length `inner.steps`) asks instead for Σᵢ wᵢ·L_T(f_θᵢ) over the
    parameters after every step i = 1..steps: MAML++'s multi-step loss.
    """
    if step_weights is None:
        adapted = adapt(model, params, x_support, y_support, inner, rates)
        return task_loss(model, adapted, x_query, y_query, loss_fn=inner.loss_fn)
    if step_weights.shape != (inner.steps,):
        raise ValueError(f"step_weights must have shape ({inner.steps},), one per inner step, "
                         f"got {tuple(step_weights.shape)}")
    steps = adaptation_steps(model, params, x_support, y_support, inner, rates)
    next(steps)  # θ itself is not scored
    losses = torch.stack([task_loss(model, p, x_query, y_query, loss_fn=inner.loss_fn) for p in steps])
    return (step_weights * losses).sum()


def meta_loss(model: nn.Module, params: Params, tasks: TaskBatch, inner: InnerLoop, *,
              rates: Params | None = None, step_weights: Tensor | None = None,
              task_batching: TaskBatching = "vmap") -> Tensor:
    """Mean over a batch of tasks of the post-adaptation query loss.

    Call ``.backward()`` on the result for the meta-gradient (with respect to
    `params` and any learned `rates`). ``task_batching="vmap"`` runs all tasks
    at once (5x faster for the sinusoid MLP on a 2-core CPU); ``"loop"`` runs
    them one by one: faster for conv nets whenever each task's batch is large
    (benchmarks/conv_meta_step.py). Either way every task's graph lives until
    the backward pass; ``meta_gradient`` frees each looped task's graph at once.
    """
    def one_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        return query_loss_after_adaptation(model, params, xs, ys, xq, yq, inner, rates=rates,
                                           step_weights=step_weights)

    if task_batching == "vmap":
        return vmap(one_task)(*tasks.tensors).mean()
    if task_batching == "loop":
        return torch.stack([one_task(*task) for task in tasks.tasks()]).mean()
    raise ValueError(f"task_batching must be 'vmap' or 'loop', got {task_batching!r}")


def meta_gradient(model: nn.Module, params: Params, tasks: TaskBatch, inner: InnerLoop, *,
                  rates: Params | None = None, step_weights: Tensor | None = None,
                  task_batching: TaskBatching = "vmap", wrt: Params | None = None) -> tuple[Params, Tensor]:
    """∇ of ``meta_loss`` and its (detached) value: what the training loop steps with.

    The gradient is taken with respect to `wrt` (by name; default `params`;
    Meta-SGD and MAML++ add their learned `rates`). With
    ``task_batching="loop"`` each task's graph is differentiated and freed
    before the next task's is built, so memory holds one task's graph rather
    than the whole meta-batch's (Omniglot 20-way: benchmarks/README.md). The
    sum is the same as differentiating ``meta_loss``; tests check both against
    a plain autograd loop. With ``"vmap"`` the batch is one graph either way.
    """
    wrt = params if wrt is None else wrt
    names, leaves = list(wrt), list(wrt.values())
    if task_batching != "loop":
        loss = meta_loss(model, params, tasks, inner, rates=rates, step_weights=step_weights,
                         task_batching=task_batching)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        return {name: torch.zeros_like(p) if g is None else g for name, p, g in zip(names, leaves, grads)}, \
            loss.detach()
    totals = [torch.zeros_like(p) for p in leaves]
    losses = []
    for xs, ys, xq, yq in tasks.tasks():
        loss = query_loss_after_adaptation(model, params, xs, ys, xq, yq, inner, rates=rates,
                                           step_weights=step_weights) / len(tasks)
        # Learned rates may be computed once outside this loop (helpers.models.MetaLearner.split scales them),
        # so every task's graph shares that step: keep its buffers; the task's own graph goes with `loss`.
        grads = torch.autograd.grad(loss, leaves, allow_unused=True, retain_graph=rates is not None)
        for total, g in zip(totals, grads):
            if g is not None:
                total += g
        losses.append(loss.detach())
        del loss, grads
    return dict(zip(names, totals)), torch.stack(losses).sum()
