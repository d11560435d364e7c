"""The CUDA paths against the CPU's float64 reference. Skipped without a CUDA device (CI has none):
benchmarks/gpu_session.sh runs them on a borrowed GPU."""
import functools

import pytest
import torch
import torch.nn.functional as F

from helpers import InnerLoop, TaskBatch, meta_gradient
from helpers.cuda_graph import GraphedGradient
from helpers.episodes import sample_episodes
from helpers.evaluate import evaluate_fewshot
from helpers.experiments import FEWSHOT_CELLS, MAMLSettings, fewshot_model, maml_objective
from helpers.fast_paths import float32_numerics
from helpers.models import BatchStatsNorm2d, ConvNet, as_the_paper_writes_it
from helpers.train import TrainConfig, train
from kink_margin import episodes_away_from_kinks
from test_conv_meta_gradient import random_episodes
from test_maml_gradient import reference_meta_gradient

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")
PATHS = ["loop", "vmap", "graph-vmap", "graph-loop"]


def cell_episodes(cell, n_tasks=2, seed=0, dtype=torch.float64):
    """Random pixels in the cell's shapes (N-way, K support and its query count per class)."""
    size, channels = (28, 1) if cell.dataset == "omniglot" else (84, 3)
    return random_episodes(n_tasks=n_tasks, n_way=cell.n_way, k_shot=cell.k_shot, n_query=cell.n_query,
                           size=size, channels=channels, seed=seed).to(dtype=dtype)


def gradient_on(path, model, params, inner):
    """A (params, tasks) -> gradient function for one of PATHS; the graphed ones capture on first call."""
    batching = path.removeprefix("graph-")
    plain = lambda p, tasks: meta_gradient(model, p, tasks, inner, task_batching=batching)  # noqa: E731
    return GraphedGradient(plain) if path.startswith("graph") else plain


def relative_error(ours, reference):
    flat = lambda g: torch.cat([t.detach().double().cpu().flatten() for t in g.values()])  # noqa: E731
    return float((flat(ours) - flat(reference)).norm() / flat(reference).norm())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("name", [n for n in FEWSHOT_CELLS if not n.endswith("first_order")])
def test_cuda_float64_meta_gradient_matches_the_cpu_reference(name, first_order, path):
    """Every Table 1 cell's net and task shape (random pixels, 2 tasks), each order and path, float64: the CUDA
    kernels and the graph compute Algorithm 1. A graph is checked on its second batch, so its inputs are refilled."""
    cell = FEWSHOT_CELLS[name]
    model, inner, reference = cpu_reference(name, first_order)
    model_cuda = fewshot_model(cell, first_order).double().to(CUDA)
    model_cuda.load_state_dict(model.state_dict())
    params = dict(model_cuda.named_parameters())
    gradient = gradient_on(path, model_cuda, params, inner)
    gradient(params, cell_episodes(cell, seed=1).to(CUDA))
    ours, _ = gradient(params, cell_episodes(cell, seed=2).to(CUDA))
    assert relative_error(ours, reference) < 1e-10


@functools.cache
def cpu_reference(name, first_order):
    """(net, inner loop, float64 meta-gradient of the paper's net on the CPU) for seed 2's episodes."""
    cell = FEWSHOT_CELLS[name]
    torch.manual_seed(0)
    model = fewshot_model(cell, first_order).double()
    inner = InnerLoop(cell.inner_lr, cell.n_inner_steps, first_order, loss_fn=F.cross_entropy)
    reference = reference_meta_gradient(as_the_paper_writes_it(model), dict(model.named_parameters()),
                                        cell_episodes(cell, seed=2), inner)
    return model, inner, reference


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("downsample, inner_lr, steps", [("stride", 0.4, 1), ("stride", 0.1, 5),
                                                         ("maxpool", 0.01, 5)])
def test_cuda_float32_meta_gradient_within_bound(downsample, inner_lr, steps, first_order, path):
    """float32 on CUDA (TF32 off, as training runs) against float64, on episodes clear of the nets' kinks
    (tests/kink_margin.py), with the CPU fast paths' bound: 1e-4 of each parameter's gradient."""
    torch.manual_seed(0)
    size, channels = (28, 1) if downsample == "stride" else (32, 3)
    model = ConvNet(3, in_channels=channels, hidden=16, image_size=size, downsample=downsample)
    inner = InnerLoop(inner_lr, steps, first_order, loss_fn=F.cross_entropy)
    reference_model = as_the_paper_writes_it(model).double()
    reference_params = dict(reference_model.named_parameters())
    tasks, _, _ = episodes_away_from_kinks(lambda seed: random_episodes(size=size, channels=channels, seed=seed),
                                           reference_model, reference_params, inner)
    reference = reference_meta_gradient(reference_model, reference_params, tasks, inner)
    model = model.to(CUDA)
    params = dict(model.named_parameters())
    gradient = gradient_on(path, model, params, inner)
    with float32_numerics(CUDA):
        gradient(params, tasks.to(CUDA, torch.float32))
        ours, _ = gradient(params, tasks.to(CUDA, torch.float32))
    floor = 1e-2 * torch.cat([g.flatten() for g in reference.values()]).norm()
    errors = {name: float((ours[name].double().cpu() - reference[name]).norm()
                          / reference[name].norm().clamp_min(floor)) for name in params}
    assert max(errors.values()) < 1e-4, errors


def test_evaluation_on_cuda_scores_as_on_the_cpu():
    """20 seeded episodes, scored by the same net on each device after 0..5 steps: the same accuracy, up to one
    prediction flipped by float32 rounding per 100. Each class is one random image, noisy in each drawing, so
    that adapting to one drawing helps classify the others."""
    cell = FEWSHOT_CELLS["omniglot_5way_1shot"]
    torch.manual_seed(0)
    model = fewshot_model(cell)
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randint(0, 256, (40, 1, 28, 28), generator=generator)
    noise = torch.randint(-40, 41, (40, 20, 28, 28), generator=generator)
    images = (prototypes + noise).clamp(0, 255).to(torch.uint8)
    curves = []
    for device in ("cpu", CUDA):
        model = model.to(device)
        with float32_numerics(device):
            curves.append(evaluate_fewshot(model, dict(model.named_parameters()), images, n_way=5, k_shot=1,
                                           n_query=1, n_tasks=20, inner_lr=cell.inner_lr, max_steps=5,
                                           task_batching="vmap" if device == CUDA else "loop"))
    assert (curves[0].mean - curves[1].mean.cpu()).abs().max() <= 1 / (20 * 5) + 1e-9
    assert curves[0].mean[5] > curves[0].mean[0]  # it adapted: not two curves at chance


def test_resumed_cuda_run_equals_an_uninterrupted_one(tmp_path):
    """4 iterations at once, or 2 then 2 from the checkpoint: the same weights (graph, prefetching and the
    generator's saved state included), up to the GPU's non-deterministic summation order."""
    images = torch.randint(0, 256, (30, 20, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    settings = MAMLSettings(inner_lr=0.4, n_inner_steps=1, meta_batch_size=4, k_shot=1, n_query=1)

    def run(path, until):
        torch.manual_seed(0)
        model = ConvNet(5, hidden=16)
        result = train(model, maml_objective(model, settings, loss_fn=F.cross_entropy),
                       lambda g: sample_episodes(images, 4, 5, 1, 1, generator=g),
                       TrainConfig(n_iterations=4, log_every=1, checkpoint_every=1), experiment="cuda-resume",
                       objective_config={}, checkpoint_path=path, device=CUDA, progress=False,
                       stop_at_iteration=until)
        return result

    straight = run(tmp_path / "straight.pt", None)
    run(tmp_path / "resumed.pt", 2)
    resumed = run(tmp_path / "resumed.pt", None)
    assert resumed.iteration == straight.iteration == 4
    for name, value in straight.model.state_dict().items():
        if name in biases_before_batch_norm(straight.model):
            continue
        assert torch.allclose(resumed.model.state_dict()[name], value, rtol=0, atol=1e-6), name
    assert resumed.loss_history == pytest.approx(straight.loss_history, rel=1e-5)


def biases_before_batch_norm(model):
    """A conv bias that feeds batch norm is subtracted again with the mean: its true gradient is 0, and what the
    GPU computes for it is rounding noise whose sign changes with the order of its atomic sums. Adam turns any
    sign into a full step of its learning rate, so these biases wander by about 1e-3 per iteration, differently
    in every run, without changing the function (measured on an H200: 2e-3 apart after 4 iterations)."""
    blocks = list(model.features)
    return {f"features.{i}.bias" for i, (m, after) in enumerate(zip(blocks, blocks[1:]))
            if isinstance(m, torch.nn.Conv2d) and isinstance(after, BatchStatsNorm2d)}


def test_training_on_cuda_replays_a_graph_and_moves_the_weights(tmp_path):
    """The graph is captured once and its gradients reach Adam: the weights move, the loss stays finite."""
    import helpers.train

    captured = []
    original = helpers.train.GraphedGradient

    class Counting(original):
        def _capture(self, *args):
            captured.append(1)
            return super()._capture(*args)

    images = torch.randint(0, 256, (30, 20, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    settings = MAMLSettings(inner_lr=0.4, n_inner_steps=1, meta_batch_size=4, k_shot=1, n_query=1)
    torch.manual_seed(0)
    model = ConvNet(5, hidden=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    helpers.train.GraphedGradient = Counting
    try:
        result = train(model, maml_objective(model, settings, loss_fn=F.cross_entropy),
                       lambda g: sample_episodes(images, 4, 5, 1, 1, generator=g),
                       TrainConfig(n_iterations=10, log_every=5, checkpoint_every=5), experiment="cuda-graph",
                       objective_config={}, device=CUDA, progress=False)
    finally:
        helpers.train.GraphedGradient = original
    assert captured == [1]
    assert all(torch.isfinite(torch.tensor(result.loss_history)))
    assert any(not torch.equal(before[k], v.cpu()) for k, v in result.model.state_dict().items())
