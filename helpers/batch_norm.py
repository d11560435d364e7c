"""Batch norm over batch statistics with its second derivatives written out: fewer passes over memory.

A second-order MAML step differentiates the inner loop's gradient, so it runs the
derivative of batch norm's backward. torch builds that from about thirty small
tensor ops (``batchnorm_double_backward``). Here it is a handful: the backward
is one autograd Function whose forward is torch's fused backward kernel, and
whose own backward applies the closed-form formulas below, reusing that fused
kernel for three of its terms. The float64 tests check them against autograd
(tests/test_batch_norm.py); benchmarks/README.md says what they are worth.

Per channel, over the N values it normalises (batch x height x width), with
x̂ = (x - mean) · s, s = 1/sqrt(var + eps) and y = γ x̂ + β, the backward of an
upstream gradient g is

    dβ = Σ g,   dγ = Σ g x̂,   dx = γ s (g - ḡ - x̂ m)       (ḡ = mean g, m = mean g x̂).

Its backward, for upstream (u, u_γ, u_β) on (dx, dγ, dβ), with ū = mean u,
v = mean u x̂, w = mean u g and q = w - ḡ ū - m v:

    ∂/∂g = γ s (u - ū - x̂ v) + u_γ x̂ + u_β
    ∂/∂γ = N s q
    ∂/∂x = s u_γ (g - ḡ - x̂ m) - γ s² (q x̂ + v (g - ḡ - x̂ m) + m (u - ū - x̂ v))

(the last from ∂s/∂x = -s² x̂ / N and ∂x̂/∂x applied to a vector z being s (z - z̄ - x̂ mean(z x̂))).
"""
from __future__ import annotations

import torch
from torch.autograd import Function


def _fused_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
                    invstd: torch.Tensor, eps: float, mask: tuple[bool, bool, bool] = (True, True, True)):
    """torch's one-kernel backward: (γ s (grad - mean grad - x̂ mean(grad x̂)), Σ grad x̂, Σ grad), those in `mask`."""
    return torch.ops.aten.native_batch_norm_backward(grad, x, weight, None, None, mean, invstd, True, eps, list(mask))


class _BatchNormBackward(Function):
    """(g, x, γ) -> (dx, dγ, dβ), differentiable once more by the formulas in the module docstring."""

    @staticmethod
    def forward(grad, x, weight, mean, invstd, eps):
        return _fused_backward(grad, x, weight, mean, invstd, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad, x, weight, mean, invstd, eps = inputs
        ctx.save_for_backward(grad, x, weight, mean, invstd, output[1], output[2])
        ctx.eps = eps

    @staticmethod
    def backward(ctx, u, u_weight, u_bias):
        grad, x, weight, mean, invstd, dweight, dbias = ctx.saved_tensors
        need_grad, need_x, need_weight = ctx.needs_input_grad[:3]
        n = x.numel() // x.shape[1]
        c = lambda t: t.view(1, -1, *([1] * (x.dim() - 2)))  # noqa: E731  (C,) -> broadcastable over x
        zero = torch.zeros_like(invstd)
        u_weight = zero if u_weight is None else u_weight
        g_mean, m = dbias / n, dweight / n  # ḡ and mean(g x̂), from the forward's own sums
        s2 = weight * invstd * invstd
        if u is not None:
            # one fused pass: γ s (u - ū - x̂ v), Σ u x̂, Σ u; another, with "x̂" = g (mean 0, s 1): Σ u g
            du, u_xhat_sum, u_sum = _fused_backward(u, x, weight, mean, invstd, ctx.eps,
                                                    (need_grad, True, True))
            ones = torch.ones_like(invstd)
            _, u_g_sum, _ = _fused_backward(u, grad, ones, zero, ones, 0.0, (False, True, False))
            u_mean, v = u_sum / n, u_xhat_sum / n
            q = u_g_sum / n - g_mean * u_mean - m * v
        else:
            u_mean = v = q = zero
        grad_grad = grad_x = grad_weight = None
        if need_grad:
            # ∂/∂g = du + u_γ x̂ + u_β, with x̂ = s x - s mean
            shift = -u_weight * invstd * mean + (0 if u_bias is None else u_bias)
            grad_grad = du if u is not None else torch.zeros_like(x)
            grad_grad = grad_grad.addcmul_(x, c(u_weight * invstd)).add_(c(shift))
        if need_weight:
            grad_weight = n * invstd * q
        if need_x:
            # ∂/∂x = k_g g + k_u u + k_x x̂ + k_0, each k per channel (x̂ folded into x)
            k_g = invstd * u_weight - s2 * v
            k_x = -invstd * u_weight * m - s2 * (q - 2 * m * v)
            k_0 = -invstd * u_weight * g_mean + s2 * (v * g_mean + m * u_mean)
            grad_x = torch.addcmul(c(k_0 - k_x * invstd * mean), x, c(k_x * invstd))
            grad_x.addcmul_(grad, c(k_g))
            if u is not None:
                grad_x.addcmul_(u, c(-s2 * m))
        return grad_grad, grad_x, grad_weight, None, None, None


class _BatchNorm(Function):
    @staticmethod
    def forward(x, weight, bias, eps):
        return torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, eps = inputs
        ctx.save_for_backward(x, weight, output[1], output[2])
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.eps = eps

    @staticmethod
    def backward(ctx, grad, _mean_grad, _invstd_grad):
        x, weight, mean, invstd = ctx.saved_tensors
        dx, dweight, dbias = _BatchNormBackward.apply(grad, x, weight, mean, invstd, ctx.eps)
        return dx, dweight, dbias, None


def batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)``, with a cheaper double backward."""
    return _BatchNorm.apply(x, weight, bias, eps)[0]
