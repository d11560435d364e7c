"""The helpers' meta-gradient against a plain per-task loop with torch.autograd.grad, in float64."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from helpers import InnerLoop, SinusoidMLP, meta_gradient, meta_loss, sample_sinusoid_tasks


def reference_meta_gradient(model, params, tasks, inner):
    """Algorithm 1 of the paper, written out with nothing but autograd.grad, one task at a time.

    It reads `inner`'s numbers (lr, steps, first_order, loss_fn) but none of helpers.maml's code.
    """
    names = list(params)
    total = 0.0
    for i in range(len(tasks)):
        fast = [params[n] for n in names]
        for _ in range(inner.steps):
            pred = functional_call(model, dict(zip(names, fast)), (tasks.x_support[i],))
            loss = inner.loss_fn(pred, tasks.y_support[i])
            grads = torch.autograd.grad(loss, fast, create_graph=not inner.first_order)
            fast = [w - inner.lr * g for w, g in zip(fast, grads)]
        query = inner.loss_fn(functional_call(model, dict(zip(names, fast)), (tasks.x_query[i],)), tasks.y_query[i])
        total = total + query / len(tasks)
    return dict(zip(names, torch.autograd.grad(total, [params[n] for n in names])))


@pytest.mark.parametrize("via", ["meta_loss", "meta_gradient"])
@pytest.mark.parametrize("task_batching", ["vmap", "loop"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("n_inner_steps", [1, 3])
def test_meta_gradient_matches_plain_loop(task_batching, first_order, n_inner_steps, via):
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = SinusoidMLP()
    params = dict(model.named_parameters())
    tasks = sample_sinusoid_tasks(4, 5, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    inner = InnerLoop(0.01, n_inner_steps, first_order)
    loss = meta_loss(model, params, tasks, inner, task_batching=task_batching)
    if via == "meta_loss":
        ours = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    else:  # what the training loop steps with
        ours, value = meta_gradient(model, params, tasks, inner, task_batching=task_batching)
        assert torch.allclose(value, loss, rtol=1e-12, atol=0)
    reference = reference_meta_gradient(model, params, tasks, inner)
    for name in params:
        error = (ours[name] - reference[name]).norm() / reference[name].norm()
        assert error < 1e-10, f"{name}: relative error {error:.2e}"


def test_first_and_second_order_differ():
    """The Hessian term is real: if the two orders agreed, the first test could not tell them apart."""
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    model = SinusoidMLP()
    params = dict(model.named_parameters())
    tasks = sample_sinusoid_tasks(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = {}
    for first_order in (False, True):
        loss = meta_loss(model, params, tasks, InnerLoop(0.1, 2, first_order))
        grads[first_order] = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(params.values()))])
    assert (grads[False] - grads[True]).norm() / grads[False].norm() > 1e-4


def test_zero_inner_steps_is_plain_query_loss():
    model = SinusoidMLP()
    params = dict(model.named_parameters())
    tasks = sample_sinusoid_tasks(3, 5, generator=torch.Generator().manual_seed(2))
    loss = meta_loss(model, params, tasks, InnerLoop(0.01, 0))
    assert torch.allclose(loss, F.mse_loss(model(tasks.x_query), tasks.y_query))


def _support_loss_and_params():
    torch.manual_seed(0)
    model = SinusoidMLP().double()
    params = dict(model.named_parameters())
    tasks = sample_sinusoid_tasks(1, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def support_loss(moving, fixed):
        return F.mse_loss(functional_call(model, {**fixed, **moving}, (tasks.x_support[0],)), tasks.y_support[0])
    return support_loss, params


@pytest.mark.parametrize("first_order", [False, True])
def test_inner_gradient_is_the_same_inside_and_outside_torch_func(first_order):
    """Outside any torch.func transform inner_gradient takes torch.autograd.grad, inside torch.func.grad: same
    gradient, and (second order) the same derivative of it, taken through the fixed parameters too."""
    from helpers.maml import inner_gradient

    support_loss, params = _support_loss_and_params()
    moving = {k: v for k, v in params.items() if k.startswith("net.4")}  # the head moves, the body is fixed
    fixed = {k: v for k, v in params.items() if k not in moving}

    def outer_loss(moving, fixed):
        grads = inner_gradient(support_loss, moving, fixed, first_order)
        return sum((g ** 2).sum() for g in grads.values()), grads

    top = outer_loss(moving, fixed)
    top_second = torch.autograd.grad(top[0], list(params.values()), allow_unused=True) if not first_order else None
    # the same through torch.func: grad of the outer loss (a transform is active, so the torch.func branch runs)
    nested = torch.func.grad(lambda m, f: outer_loss(m, f)[0], argnums=(0, 1))(moving, fixed)
    inside = torch.func.vmap(lambda _: outer_loss(moving, fixed)[1])(torch.zeros(1))  # a batch of one
    for name in moving:
        assert torch.allclose(top[1][name], inside[name][0], rtol=1e-12, atol=1e-14)
    assert top[1][next(iter(moving))].requires_grad != first_order
    if not first_order:
        expected = {**nested[0], **nested[1]}
        for name, g in zip(params, top_second):
            assert torch.allclose(g, expected[name], rtol=1e-10, atol=1e-14), name


def test_inner_gradient_without_an_outer_graph():
    """Evaluation adapts under no_grad from parameters that need no gradient: the gradient is still taken, and
    no graph is kept."""
    from helpers.maml import inner_gradient

    support_loss, params = _support_loss_and_params()
    detached = {k: v.detach() for k, v in params.items()}
    with torch.no_grad():
        grads = inner_gradient(support_loss, detached, {}, first_order=False)
    with torch.no_grad():  # parameters that do need a gradient, but no graph is being recorded
        still_no_graph = inner_gradient(support_loss, params, {}, first_order=False)
    reference = torch.autograd.grad(support_loss(params, {}), list(params.values()))
    for (name, g), h, r in zip(grads.items(), still_no_graph.values(), reference):
        assert not g.requires_grad and not h.requires_grad
        assert torch.allclose(g, r, rtol=1e-12, atol=0), name
        assert torch.allclose(h, r, rtol=1e-12, atol=0), name
