"""The MAML core, written once for any model (Finn et al. 2017, Algorithm 1).

Parameters are a plain ``dict[str, Tensor]`` and the model is only ever called
through ``torch.func.functional_call``, so adapting never mutates the model:

    θ'ᵢ = θ − α ∇θ L_Tᵢ(f_θ)                  (inner loop, on the support set)
    θ  ← θ − β ∇θ Σᵢ L_Tᵢ(f_θ'ᵢ)              (outer loop, on the query set)

Training, evaluation, baselines and widgets all call the same ``adapt``.
"""
from __future__ import annotations

from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from .checks import check_int_at_least, check_positive

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
TaskBatching = Literal["vmap", "loop"]


def task_loss(model: nn.Module, params: Params, x: Tensor, y: Tensor, *, loss_fn: LossFn = F.mse_loss) -> Tensor:
    """L_T(f_params) on one task's examples."""
    return loss_fn(functional_call(model, params, (x,)), y)


def adaptation_steps(
    model: nn.Module,
    params: Params,
    x_support: Tensor,
    y_support: Tensor,
    *,
    inner_lr: float,
    n_inner_steps: int,
    first_order: bool = False,
    loss_fn: LossFn = F.mse_loss,
) -> Iterator[Params]:
    """Yield θ, then θ after each of `n_inner_steps` gradient steps on the support set.

    The gradient comes from ``torch.func.grad``, so the same code runs on one task,
    inside ``vmap`` over tasks, and under an outer ``backward()``, which then
    differentiates through the steps (second order). ``first_order=True`` detaches
    the inner gradients: the Hessian-vector terms vanish (first-order MAML).
    """
    inner_lr = check_positive("inner_lr", inner_lr)
    check_int_at_least("n_inner_steps", n_inner_steps, 0)
    support_grad = grad(lambda p: task_loss(model, p, x_support, y_support, loss_fn=loss_fn))
    yield params
    for _ in range(n_inner_steps):
        grads = support_grad(params)
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        params = {name: p - inner_lr * grads[name] for name, p in params.items()}
        yield params


def adapt(
    model: nn.Module,
    params: Params,
    x_support: Tensor,
    y_support: Tensor,
    *,
    inner_lr: float,
    n_inner_steps: int,
    first_order: bool = False,
    loss_fn: LossFn = F.mse_loss,
) -> Params:
    """θ' after `n_inner_steps` gradient steps on one task's support set (a new dict)."""
    for adapted in adaptation_steps(model, params, x_support, y_support, inner_lr=inner_lr,
                                    n_inner_steps=n_inner_steps, first_order=first_order, loss_fn=loss_fn):
        pass
    return adapted


def query_loss_after_adaptation(
    model: nn.Module,
    params: Params,
    x_support: Tensor,
    y_support: Tensor,
    x_query: Tensor,
    y_query: Tensor,
    *,
    inner_lr: float,
    n_inner_steps: int,
    first_order: bool = False,
    loss_fn: LossFn = F.mse_loss,
) -> Tensor:
    """L_T(f_θ') for one task: the quantity MAML minimises."""
    adapted = adapt(model, params, x_support, y_support, inner_lr=inner_lr, n_inner_steps=n_inner_steps,
                    first_order=first_order, loss_fn=loss_fn)
    return task_loss(model, adapted, x_query, y_query, loss_fn=loss_fn)


def meta_loss(
    model: nn.Module,
    params: Params,
    x_support: Tensor,
    y_support: Tensor,
    x_query: Tensor,
    y_query: Tensor,
    *,
    inner_lr: float,
    n_inner_steps: int,
    first_order: bool = False,
    loss_fn: LossFn = F.mse_loss,
    task_batching: TaskBatching = "vmap",
) -> Tensor:
    """Mean over a batch of tasks of the post-adaptation query loss.

    Tensors carry a leading task axis: ``x_support`` is (tasks, K, ...). Call
    ``.backward()`` on the result for the meta-gradient. ``task_batching="vmap"``
    runs all tasks at once (5x faster for the sinusoid MLP on a 2-core CPU);
    ``"loop"`` runs them one by one: faster for conv nets whenever each task's
    batch is large (benchmarks/conv_meta_step.py), and right for modules
    whose second derivatives vmap gets wrong (torch's own batch-norm kernel:
    see models.BatchStatsNorm2d). Either way every task's graph lives until
    the backward pass; ``meta_gradient`` frees each looped task's graph at once.
    """
    _check_task_axis(x_support)

    def one_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        return query_loss_after_adaptation(model, params, xs, ys, xq, yq, inner_lr=inner_lr,
                                           n_inner_steps=n_inner_steps, first_order=first_order, loss_fn=loss_fn)

    if task_batching == "vmap":
        return vmap(one_task)(x_support, y_support, x_query, y_query).mean()
    if task_batching == "loop":
        losses = [one_task(*task) for task in zip(x_support, y_support, x_query, y_query)]
        return torch.stack(losses).mean()
    raise ValueError(f"task_batching must be 'vmap' or 'loop', got {task_batching!r}")


def meta_gradient(
    model: nn.Module,
    params: Params,
    x_support: Tensor,
    y_support: Tensor,
    x_query: Tensor,
    y_query: Tensor,
    *,
    inner_lr: float,
    n_inner_steps: int,
    first_order: bool = False,
    loss_fn: LossFn = F.mse_loss,
    task_batching: TaskBatching = "vmap",
) -> tuple[Params, Tensor]:
    """∇θ of ``meta_loss``, and its (detached) value: what the training loop steps with.

    With ``task_batching="loop"`` each task's graph is differentiated and freed
    before the next task's is built, so memory holds one task's graph rather
    than the whole meta-batch's (Omniglot 20-way: benchmarks/README.md). The
    sum is the same as differentiating ``meta_loss``; tests check both against
    a plain autograd loop. With ``"vmap"`` the batch is one graph either way.
    """
    names, leaves = list(params), list(params.values())
    if task_batching != "loop":
        loss = meta_loss(model, params, x_support, y_support, x_query, y_query, inner_lr=inner_lr,
                         n_inner_steps=n_inner_steps, first_order=first_order, loss_fn=loss_fn,
                         task_batching=task_batching)
        return dict(zip(names, torch.autograd.grad(loss, leaves))), loss.detach()
    _check_task_axis(x_support)
    n_tasks = x_support.shape[0]
    totals = [torch.zeros_like(p) for p in leaves]
    losses = []
    for xs, ys, xq, yq in zip(x_support, y_support, x_query, y_query):
        loss = query_loss_after_adaptation(model, params, xs, ys, xq, yq, inner_lr=inner_lr,
                                           n_inner_steps=n_inner_steps, first_order=first_order,
                                           loss_fn=loss_fn) / n_tasks
        for total, g in zip(totals, torch.autograd.grad(loss, leaves)):
            total += g
        losses.append(loss.detach())
    return dict(zip(names, totals)), torch.stack(losses).sum()


def _check_task_axis(x_support: Tensor) -> None:
    if x_support.ndim < 2 or x_support.shape[0] < 1:
        raise ValueError(f"x_support must have a leading task axis of length >= 1, got shape {tuple(x_support.shape)}")
    if x_support.shape[1] < 1:
        raise ValueError(f"k_shot (x_support.shape[1]) must be >= 1, got {x_support.shape[1]}")
