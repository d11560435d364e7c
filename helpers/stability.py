"""Why a few tasks blow up under repeated inner steps: the curvature of the support loss.

Gradient descent with step α on a loss whose sharpest curvature (the largest
Hessian eigenvalue λ_max) satisfies α·λ_max > 2 overshoots along that direction
and grows instead of shrinking. MAML trained with one step never sees a second
step, so nothing keeps α·λ_max below 2 after the first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, vjp, vmap

from .batches import TaskBatch
from .maml import LossFn, Params, task_loss


def support_sharpness(model: nn.Module, params: Params, tasks: TaskBatch, *, n_iterations: int = 30, seed: int = 0,
                      loss_fn: LossFn = F.mse_loss) -> Tensor:
    """λ_max of the Hessian of each task's support loss at `params` (power iteration), shape (tasks,).

    Only the support sets are used: they are what the inner steps descend on.
    """
    params = {k: v.detach() for k, v in params.items()}
    generator = torch.Generator().manual_seed(seed)
    start = {k: torch.randn(v.shape, generator=generator).to(v) for k, v in params.items()}

    def one_task(xs: Tensor, ys: Tensor) -> Tensor:
        grad_fn = grad(lambda p: task_loss(model, p, xs, ys, loss_fn=loss_fn))

        _, grad_vjp = vjp(grad_fn, params)  # H·v = vjp of the gradient (the Hessian is symmetric)

        def hvp(v: Params) -> Params:
            return grad_vjp(v)[0]

        v, eigenvalue = start, torch.zeros(())
        for _ in range(n_iterations):
            norm = torch.sqrt(sum((t * t).sum() for t in v.values()))
            v = {k: t / norm for k, t in v.items()}
            hv = hvp(v)
            eigenvalue = sum((hv[k] * v[k]).sum() for k in v)  # Rayleigh quotient
            v = hv
        return eigenvalue

    return vmap(one_task)(tasks.x_support, tasks.y_support).detach()
