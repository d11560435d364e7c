"""The conv net's meta-gradient (batch norm with batch statistics) against a plain autograd loop, in float64."""
import pytest
import torch
import torch.nn.functional as F

from helpers import InnerLoop, TaskBatch, meta_gradient, meta_loss
from helpers.models import BatchStatsNorm2d, ConvNet, as_the_paper_writes_it
from test_maml_gradient import reference_meta_gradient


def random_episodes(n_tasks=2, n_way=3, k_shot=2, n_query=2, size=28, channels=1) -> TaskBatch:
    generator = torch.Generator().manual_seed(0)
    x_support = torch.rand(n_tasks, n_way * k_shot, channels, size, size, generator=generator, dtype=torch.float64)
    x_query = torch.rand(n_tasks, n_way * n_query, channels, size, size, generator=generator, dtype=torch.float64)
    y_support = torch.arange(n_way).repeat_interleave(k_shot).expand(n_tasks, -1)
    y_query = torch.arange(n_way).repeat_interleave(n_query).expand(n_tasks, -1)
    return TaskBatch(x_support, y_support, x_query, y_query)


def with_builtin_batch_norm(model):
    """The same net with torch's own batch-norm kernel in place of BatchStatsNorm2d."""
    for index, module in enumerate(model.features):
        if isinstance(module, BatchStatsNorm2d):
            model.features[index] = torch.nn.BatchNorm2d(module.weight.shape[0], track_running_stats=False)
    return model


def relative_errors(task_batching, first_order, n_inner_steps, builtin_batch_norm=False, via="meta_loss",
                    downsample="stride", double_backward_formulas=False, channels_last=None):
    """Omniglot's net (stride 2, grey 28x28) or MiniImagenet's (max-pool, colour; 32x32 keeps it quick)."""
    torch.manual_seed(0)
    size, channels = (28, 1) if downsample == "stride" else (32, 3)
    model = ConvNet(3, in_channels=channels, hidden=8, image_size=size, downsample=downsample)
    model.double_backward_formulas = double_backward_formulas
    if channels_last is not None:
        model.channels_last = channels_last
    model = (with_builtin_batch_norm(model) if builtin_batch_norm else model).double()
    params = dict(model.named_parameters())
    tasks = random_episodes(size=size, channels=channels)
    inner = InnerLoop(0.4, n_inner_steps, first_order, loss_fn=F.cross_entropy)
    if via == "meta_loss":
        loss = meta_loss(model, params, tasks, inner, task_batching=task_batching)
        ours = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    else:  # what the training loop steps with
        ours, value = meta_gradient(model, params, tasks, inner, task_batching=task_batching)
        assert torch.allclose(value, meta_loss(model, params, tasks, inner, task_batching=task_batching),
                              rtol=1e-12, atol=0)
    reference = reference_meta_gradient(as_the_paper_writes_it(model), params, tasks, inner)
    # conv biases feed batch norm, so their true gradient is 0: a floor keeps rounding noise from counting
    return {name: float((ours[name] - reference[name]).norm() / reference[name].norm().clamp_min(1e-3))
            for name in params}


@pytest.mark.parametrize("via", ["meta_loss", "meta_gradient"])
@pytest.mark.parametrize("task_batching", ["vmap", "loop"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("n_inner_steps", [1, 2])
def test_conv_meta_gradient_matches_reference(task_batching, first_order, n_inner_steps, via):
    errors = relative_errors(task_batching, first_order, n_inner_steps, via=via)
    assert max(errors.values()) < 1e-10, errors


@pytest.mark.parametrize("task_batching", ["vmap", "loop"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("n_inner_steps", [1, 3])
def test_maxpool_conv_meta_gradient_matches_reference(task_batching, first_order, n_inner_steps):
    errors = relative_errors(task_batching, first_order, n_inner_steps, via="meta_gradient", downsample="maxpool")
    assert max(errors.values()) < 1e-10, errors


@pytest.mark.parametrize("downsample, channels_last", [("stride", False), ("maxpool", False), ("maxpool", True)])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("n_inner_steps", [1, 3])
def test_batch_norm_formulas_meta_gradient_matches_reference(downsample, channels_last, first_order, n_inner_steps):
    """Batch norm differentiated by helpers.batch_norm's formulas, in each memory format a net trains in."""
    errors = relative_errors("loop", first_order, n_inner_steps, via="meta_gradient", downsample=downsample,
                             double_backward_formulas=True, channels_last=channels_last)
    assert max(errors.values()) < 1e-10, errors


def test_builtin_batch_norm_is_exact_in_a_loop_and_to_first_order_under_vmap():
    assert max(relative_errors("loop", False, 1, builtin_batch_norm=True).values()) < 1e-10
    assert max(relative_errors("vmap", True, 1, builtin_batch_norm=True).values()) < 1e-10


@pytest.mark.xfail(strict=True, reason="torch.func.vmap gets second-order gradients through torch's batch-norm "
                                       "kernel wrong, hence BatchStatsNorm2d. If this starts passing, the "
                                       "built-in kernel can be used again.")
def test_builtin_batch_norm_second_order_under_vmap():
    errors = relative_errors("vmap", False, 1, builtin_batch_norm=True)
    assert max(errors.values()) < 1e-10, errors


def test_batch_norm_takes_the_fused_kernel_outside_vmap_and_plain_ops_inside(monkeypatch):
    """Both paths are the ones checked above: the loop runs torch's kernel, vmap the plain ops."""
    import helpers.models

    calls = []
    kernel = helpers.models.F.batch_norm
    monkeypatch.setattr(helpers.models.F, "batch_norm", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    model = ConvNet(3, hidden=8).double()
    for task_batching, expected in (("loop", True), ("vmap", False)):
        calls.clear()
        meta_gradient(model, dict(model.named_parameters()), random_episodes(),
                      InnerLoop(0.4, 1, loss_fn=F.cross_entropy), task_batching=task_batching)
        assert bool(calls) == expected, (task_batching, len(calls))
    norm = BatchStatsNorm2d(4).double()
    x = torch.randn(6, 4, 5, 5, dtype=torch.float64)
    from torch.func import vmap
    assert torch.allclose(norm(x), vmap(norm)(x[None])[0], rtol=0, atol=1e-12)  # both paths, same numbers


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("downsample, inner_lr, steps, formulas", [("stride", 0.4, 1, False), ("stride", 0.1, 5, False),
                                                                  ("maxpool", 0.01, 5, False),
                                                                  ("maxpool", 0.01, 5, True)])
def test_float32_fast_path_matches_float64_reference(downsample, inner_lr, steps, formulas, first_order):
    """What training runs (float32: oneDNN's channels-last kernels, fused batch norm, pool before ReLU, with or
    without the batch-norm formulas) against the paper's net in float64 through the plain loop, at the paper's α
    and steps for each net (Omniglot 1 and 5 steps, MiniImagenet 5); float64 takes other kernels, so this is
    their check."""
    torch.manual_seed(0)
    size, channels = (28, 1) if downsample == "stride" else (32, 3)
    model = ConvNet(3, in_channels=channels, hidden=16, image_size=size, downsample=downsample)
    model.double_backward_formulas = formulas
    params = dict(model.named_parameters())
    tasks = random_episodes(size=size, channels=channels)
    inner = InnerLoop(inner_lr, steps, first_order, loss_fn=F.cross_entropy)
    ours, _ = meta_gradient(model, params, TaskBatch(*(t.float() if t.is_floating_point() else t
                                                       for t in tasks.tensors)), inner, task_batching="loop")
    reference_model = as_the_paper_writes_it(model).double()
    reference_params = dict(reference_model.named_parameters())
    reference = reference_meta_gradient(reference_model, reference_params, tasks, inner)
    # float32 rounding is relative to the whole gradient: conv biases (true gradient 0) are judged on that scale
    floor = 1e-2 * torch.cat([g.flatten() for g in reference.values()]).norm()
    errors = {name: float((ours[name].double() - reference[name]).norm() / reference[name].norm().clamp_min(floor))
              for name in params}
    assert max(errors.values()) < 1e-4, errors


def test_channels_last_runs_outside_vmap_only():
    """Looped tasks reach the first conv channels-last; under vmap, where asking for a memory format raises
    ("NYI: querying is_contiguous inside of vmap"), the same net still runs."""
    seen = []
    model = ConvNet(3, in_channels=3, hidden=8, image_size=32, downsample="maxpool")
    episodes = TaskBatch(*(t.float() if t.is_floating_point() else t for t in random_episodes(channels=3, size=32).tensors))
    inner = InnerLoop(0.4, 1, loss_fn=F.cross_entropy)
    meta_gradient(model, dict(model.named_parameters()), episodes, inner, task_batching="vmap")
    model.features[0].register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    meta_gradient(model, dict(model.named_parameters()), episodes, inner, task_batching="loop")
    assert seen and all(seen)


def test_fast_paths_are_chosen_per_net_and_order():
    """Where each was measured faster (benchmarks/README.md): channels-last for the Mini net first order, in
    evaluation and 1-shot second order, never for Omniglot; batch-norm formulas second order for the Mini net and
    Omniglot 20-way 5-shot."""
    from helpers.experiments import FEWSHOT_CELLS, fewshot_model

    for name, cell in FEWSHOT_CELLS.items():
        mini = cell.dataset == "miniimagenet"
        second_order = not cell.first_order
        assert fewshot_model(cell).channels_last == (mini and (cell.first_order or cell.k_shot == 1))
        assert fewshot_model(cell).double_backward_formulas == (
            second_order and (mini or name == "omniglot_20way_5shot")), name
        assert fewshot_model(cell, first_order=True).channels_last == mini
        assert not fewshot_model(cell, first_order=True).double_backward_formulas
    # models rebuilt from checkpoints (evaluation, widgets) take their net's default
    assert not ConvNet(5).channels_last
    assert ConvNet(5, in_channels=3, hidden=32, image_size=84, downsample="maxpool").channels_last
    assert not ConvNet(5).double_backward_formulas


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_grouped_convolution_alternative_matches_reference(downsample, first_order):
    """benchmarks/alternative_paths.py times a path not taken (all tasks as one grouped-convolution net); its
    measurement means something only if its gradient is MAML's."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "alternative_paths.py"
    spec = importlib.util.spec_from_file_location("alternative_paths", path)
    alternative_paths = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alternative_paths)
    torch.manual_seed(0)
    size, channels = (28, 1) if downsample == "stride" else (32, 3)
    model = ConvNet(3, in_channels=channels, hidden=8, image_size=size, downsample=downsample).double()
    params = dict(model.named_parameters())
    tasks = random_episodes(n_tasks=3, size=size, channels=channels)
    inner = InnerLoop(0.4, 2, first_order, loss_fn=F.cross_entropy)
    ours, loss = alternative_paths.grouped_meta_gradient(model, params, tasks, inner)
    reference = reference_meta_gradient(as_the_paper_writes_it(model), params, tasks, inner)
    errors = {name: float((ours[name] - reference[name]).norm() / reference[name].norm().clamp_min(1e-3))
              for name in params}
    assert max(errors.values()) < 1e-10, errors
    assert torch.allclose(loss, meta_loss(model, params, tasks, inner, task_batching="loop"), rtol=1e-12, atol=0)
