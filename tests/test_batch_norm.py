"""helpers.batch_norm's closed-form derivatives against autograd through torch's own kernel, in float64."""
import pytest
import torch
import torch.nn.functional as F

from helpers.batch_norm import batch_norm


def inputs(channels_last=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 5, 6, generator=generator, dtype=torch.float64) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(4, generator=generator, dtype=torch.float64)
    bias = torch.randn(4, generator=generator, dtype=torch.float64)
    return [t.requires_grad_() for t in (x, weight, bias)]


def test_first_and_second_derivatives_pass_gradcheck():
    assert torch.autograd.gradcheck(batch_norm, tuple(inputs()))
    assert torch.autograd.gradgradcheck(batch_norm, tuple(inputs()))


def torch_kernel(x, weight, bias):
    return F.batch_norm(x, None, None, weight, bias, training=True)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("outer_uses", [("x", "weight", "bias"), ("x",), ("weight",), ("bias",), ("x", "bias")])
def test_second_order_matches_torch_kernel(outer_uses, channels_last):
    """A MAML-like quantity: a function of the first derivatives, differentiated again. `outer_uses` leaves some
    of the backward's outputs out, so that their upstream gradients reach the formulas as None."""
    def second_order(norm):
        x, weight, bias = inputs(channels_last)
        y = norm(x, weight, bias)
        loss = (y.sin() * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum()
        first = dict(zip(("x", "weight", "bias"), torch.autograd.grad(loss, (x, weight, bias), create_graph=True)))
        outer = sum((first[name].cos() * (i + 1)).sum() for i, name in enumerate(outer_uses))
        return torch.autograd.grad(outer, (x, weight, bias), allow_unused=True)

    ours, theirs = second_order(batch_norm), second_order(torch_kernel)
    for name, a, b in zip(("x", "weight", "bias"), ours, theirs):
        a = torch.zeros(()) if a is None else a
        b = torch.zeros(()) if b is None else b
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (name, (a - b).abs().max())


def test_forward_matches_torch_kernel():
    x, weight, bias = inputs()
    assert torch.allclose(batch_norm(x, weight, bias), torch_kernel(x, weight, bias), rtol=0, atol=1e-12)
