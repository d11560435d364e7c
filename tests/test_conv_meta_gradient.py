"""The conv net's meta-gradient (batch norm with batch statistics) against a plain autograd loop, in float64."""
import pytest
import torch
import torch.nn.functional as F

from torch.func import functional_call

from helpers import InnerLoop, TaskBatch, adapt, meta_gradient, meta_loss
from helpers.models import BatchStatsNorm2d, ConvNet, as_the_paper_writes_it
from kink_margin import episodes_away_from_kinks, kink_margin
from test_maml_gradient import reference_meta_gradient


def random_episodes(n_tasks=2, n_way=3, k_shot=2, n_query=2, size=28, channels=1, seed=0) -> TaskBatch:
    generator = torch.Generator().manual_seed(seed)
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
    their check. On episodes that keep clear of ReLU's and max-pool's kinks (tests/kink_margin.py): next to one,
    float32 rounding may take the other branch of the function, whatever the kernels."""
    torch.manual_seed(0)
    size, channels = (28, 1) if downsample == "stride" else (32, 3)
    model = ConvNet(3, in_channels=channels, hidden=16, image_size=size, downsample=downsample)
    model.double_backward_formulas = formulas
    params = dict(model.named_parameters())
    inner = InnerLoop(inner_lr, steps, first_order, loss_fn=F.cross_entropy)
    reference_model = as_the_paper_writes_it(model).double()
    reference_params = dict(reference_model.named_parameters())
    tasks, _, _ = episodes_away_from_kinks(lambda seed: random_episodes(size=size, channels=channels, seed=seed),
                                           reference_model, reference_params, inner)
    ours, _ = meta_gradient(model, params, TaskBatch(*(t.float() if t.is_floating_point() else t
                                                       for t in tasks.tensors)), inner, task_batching="loop")
    reference = reference_meta_gradient(reference_model, reference_params, tasks, inner)
    # float32 rounding is relative to the whole gradient: conv biases (true gradient 0) are judged on that scale
    floor = 1e-2 * torch.cat([g.flatten() for g in reference.values()]).norm()
    errors = {name: float((ours[name].double() - reference[name]).norm() / reference[name].norm().clamp_min(floor))
              for name in params}
    assert max(errors.values()) < 1e-4, errors


def test_float32_error_next_to_a_kink_is_the_function_not_the_kernels():
    """Why the test above avoids kinks: on seed 0's episodes (Omniglot net, α 0.1, 5 steps) one batch-norm output
    sits within float32 rounding of ReLU's 0. The float64 reference, evaluated at float32's own adapted weights
    but with that one ReLU gate flipped, moves by percent; the float32 gradient matches one of the two branches
    to float32 accuracy, whichever its kernels took (measured: avx2 one branch, default the other)."""
    torch.manual_seed(0)
    model = ConvNet(3, hidden=16)
    inner = InnerLoop(0.1, 5, True, loss_fn=F.cross_entropy)
    reference_model = as_the_paper_writes_it(model).double()
    reference_params = dict(reference_model.named_parameters())
    tasks = random_episodes(seed=0)
    assert kink_margin(reference_model, reference_params, tasks, inner) < 1e-6
    xs, ys, xq, yq = next(iter(tasks.tasks()))
    adapted = {k: v.detach() for k, v in adapt(model, dict(model.named_parameters()), xs.float(), ys, inner).items()}
    ours = dict(zip(adapted, torch.autograd.grad(
        F.cross_entropy(functional_call(model, {k: v.requires_grad_() for k, v in adapted.items()},
                                        (xq.float(),)), yq), list(adapted.values()))))

    def reference(flip: bool) -> dict:
        net = as_the_paper_writes_it(model).double()
        relu = net.features[8]  # after the third batch norm, where the near-zero activation is
        if flip:
            def gate(module, inputs):
                x = inputs[0]
                nearest = x.abs().flatten().argmin()
                sign = torch.zeros_like(x).flatten().index_fill_(0, nearest, 1.0).view_as(x)
                return (x - 2 * sign * x.detach(),)  # the same value with its sign, and so its gate, flipped
            relu.register_forward_pre_hook(gate)
        p = {k: v.double().requires_grad_() for k, v in adapted.items()}
        return dict(zip(p, torch.autograd.grad(F.cross_entropy(functional_call(net, p, (xq,)), yq), list(p.values()))))

    def error(a, b):
        flat = lambda g: torch.cat([t.double().flatten() for t in g.values()])  # noqa: E731
        return float((flat(a) - flat(b)).norm() / flat(b).norm())

    branches = [error(ours, reference(flip)) for flip in (False, True)]
    assert error(reference(False), reference(True)) > 1e-3, "the two branches should differ by far more than rounding"
    assert min(branches) < 1e-5, branches


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


@pytest.mark.parametrize("capability", ["default", "avx2", "avx512"])
def test_float32_fast_paths_under_each_cpu_capability(capability):
    """torch picks its CPU kernels by the capability of the processor (students' laptops mostly run AVX2 ones), so
    the float32 checks above run again under each capability this CPU can execute (ATEN_CPU_CAPABILITY forces one)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    if os.environ.get("MAML_CAPABILITY_SUBRUN"):
        pytest.skip("already inside a per-capability run")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "MAML_CAPABILITY_SUBRUN": "1"}
    chosen = subprocess.run([sys.executable, "-W", "ignore", "-c",
                             "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                            env=env, capture_output=True, text=True, check=True).stdout.strip()
    if chosen.lower() != capability:
        pytest.skip(f"this CPU cannot run {capability} kernels (torch chose {chosen})")
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)),
                          "-k", "float32_fast_path_matches or float32_error_next_to_a_kink"],
                         env=env, cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, f"under ATEN_CPU_CAPABILITY={capability}:\n{run.stdout[-3000:]}"
    assert re.search(r"^9 passed", run.stdout, re.MULTILINE), run.stdout[-500:]
