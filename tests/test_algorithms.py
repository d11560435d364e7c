"""Every algorithm of helpers.algorithms against a plain, hand-written reference, in float64.

The references write the sinusoid MLP's forward pass out by hand and loop over
tasks with torch.autograd.grad, so they share no code with helpers.maml.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.algorithms import Algorithm, AlgorithmObjective, head_names, multi_step_weights
from helpers.maml import InnerLoop
from helpers.models import ConvNet, MetaLearner, SinusoidMLP, build_model
from helpers.tasks import sample_sinusoid_tasks
from helpers.train import TrainConfig

TOL = 1e-10
LAYERS = ("net.0", "net.2", "net.4")


def mlp(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ p["net.0.weight"].T + p["net.0.bias"])
    h = torch.relu(h @ p["net.2.weight"].T + p["net.2.bias"])
    return h @ p["net.4.weight"].T + p["net.4.bias"]


def reference_gradient(weights, tasks, *, lr, steps, first_order=False, adapted=None, rates=None, step_weights=None):
    """Mean over tasks of the query loss after `steps` steps; its gradient w.r.t. the weights and any rates.

    `rates` are stored as MetaLearner stores them, in units of `lr`.
    """
    weights = {k: v.detach().clone().requires_grad_() for k, v in weights.items()}
    rates = None if rates is None else {k: v.detach().clone().requires_grad_() for k, v in rates.items()}
    adapted = list(weights) if adapted is None else list(adapted)
    total = 0.0
    for i in range(len(tasks)):
        xs, ys, xq, yq = tasks.x_support[i], tasks.y_support[i], tasks.x_query[i], tasks.y_query[i]
        p = dict(weights)
        losses = []
        for step in range(steps):
            moving = [p[name] for name in adapted]
            grads = torch.autograd.grad(F.mse_loss(mlp(p, xs), ys), moving, create_graph=not first_order)
            for name, g in zip(adapted, grads):
                rate = lr if rates is None else lr * rates[name][min(step, rates[name].shape[0] - 1)]
                p[name] = p[name] - rate * (g.detach() if first_order else g)
            losses.append(F.mse_loss(mlp(p, xq), yq))
        if step_weights is None:
            total = total + losses[-1]
        else:
            total = total + sum(w * loss for w, loss in zip(step_weights, losses))
    loss = total / len(tasks)
    leaves = {**{f"model.{k}": v for k, v in weights.items()},
              **({} if rates is None else {f"rates.{k.replace('.', '/')}": v for k, v in rates.items()})}
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(leaves.items(), grads)}, loss.detach()


def reference_reptile(weights, tasks, *, lr, steps):
    """Mean over tasks of θ − φ, φ after `steps` plain SGD steps on the task's support and query points."""
    moves = {k: torch.zeros_like(v) for k, v in weights.items()}
    for i in range(len(tasks)):
        x = torch.cat([tasks.x_support[i], tasks.x_query[i]])
        y = torch.cat([tasks.y_support[i], tasks.y_query[i]])
        p = {k: v.detach().clone().requires_grad_() for k, v in weights.items()}
        for _ in range(steps):
            grads = torch.autograd.grad(F.mse_loss(mlp(p, x), y), list(p.values()))
            p = {k: (v - lr * g).detach().requires_grad_() for (k, v), g in zip(p.items(), grads)}
        for k in moves:
            moves[k] += (weights[k] - p[k]).detach() / len(tasks)
    return {f"model.{k}": v for k, v in moves.items()}


def float64_learner(algorithm: Algorithm, seed: int = 0) -> MetaLearner:
    torch.manual_seed(seed)
    learner = algorithm.new_learner(SinusoidMLP()).double()
    with torch.no_grad():  # rates away from their common start, so that a mix-up between them shows
        for rate in learner.rates.values():
            rate.copy_(0.5 + torch.rand_like(rate))  # in units of α
    return learner


def tasks64(n_tasks: int = 4, seed: int = 1):
    return sample_sinusoid_tasks(n_tasks, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


CASES = {
    "maml_2_steps": (Algorithm("maml", InnerLoop(0.01, 2)), {}),
    "first_order_maml_3_steps": (Algorithm("fomaml", InnerLoop(0.01, 3, first_order=True)), {"first_order": True}),
    "anil_2_steps": (Algorithm("anil", InnerLoop(0.05, 2), head_only=True), {"adapted": ("net.4.weight", "net.4.bias")}),
    "meta_sgd_1_step": (Algorithm("metasgd", InnerLoop(0.01, 1), learned_rates="per_weight"), {}),
    "meta_sgd_3_steps": (Algorithm("metasgd", InnerLoop(0.01, 3), learned_rates="per_weight"), {}),
    "maml_pp_3_steps": (Algorithm("mamlpp", InnerLoop(0.01, 3), learned_rates="per_layer_step",
                                  multi_step_loss_iterations=100, cosine_meta_lr=True), {}),
}


@pytest.mark.parametrize("task_batching", ["vmap", "loop"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_meta_gradient_matches_hand_written_reference(case: str, task_batching: str) -> None:
    algorithm, options = CASES[case]
    learner = float64_learner(algorithm)
    objective = AlgorithmObjective(learner, algorithm, task_batching)
    objective.at_iteration(30)  # MAML++ mid-annealing: every step's loss counts
    params = dict(learner.named_parameters())
    tasks = tasks64()
    grads, loss = objective.gradient(params, tasks)
    weights = {name.removeprefix("model."): p for name, p in params.items() if name.startswith("model.")}
    stored_rates = {name.removeprefix("rates.").replace("/", "."): p for name, p in params.items()
                    if name.startswith("rates.")} or None
    expected, expected_loss = reference_gradient(weights, tasks, lr=algorithm.inner.lr, steps=algorithm.inner.steps,
                                                 rates=stored_rates, step_weights=objective.step_weights, **options)
    assert grads.keys() == expected.keys() == params.keys()
    for name in expected:
        scale = expected[name].abs().max().item()
        assert (grads[name] - expected[name]).abs().max().item() <= TOL * max(1.0, scale), name
    assert abs(loss.item() - expected_loss.item()) <= TOL
    if algorithm.learned_rates != "none":  # the rates are really learnt: their gradient is not zero
        assert any(expected[n].abs().max() > 0 for n in expected if n.startswith("rates."))
    if algorithm.head_only:  # the body still gets a meta-gradient through the head's adaptation
        assert expected["model.net.0.weight"].abs().max() > 0


@pytest.mark.parametrize("task_batching", ["vmap", "loop"])
def test_reptile_direction_matches_hand_written_reference(task_batching: str) -> None:
    algorithm = Algorithm("reptile", InnerLoop(0.02, 5), reptile=True)
    learner = float64_learner(algorithm)
    params = dict(learner.named_parameters())
    tasks = tasks64()
    moves, loss = AlgorithmObjective(learner, algorithm, task_batching).gradient(params, tasks)
    expected = reference_reptile(learner.split(params)[0], tasks, lr=0.02, steps=5)
    assert moves.keys() == expected.keys()
    for name in expected:
        assert (moves[name] - expected[name]).abs().max().item() <= TOL, name
    assert expected["model.net.4.bias"].abs().max() > 0 and math.isfinite(loss.item())


def test_maml_plus_plus_anneals_to_the_last_step() -> None:
    start, middle, end = (multi_step_weights(5, p) for p in (0.0, 0.5, 1.0))
    assert torch.allclose(start, torch.full((5,), 0.2, dtype=torch.float64))
    for weights in (start, middle, end):
        assert abs(weights.sum().item() - 1.0) < 1e-12
    assert middle[0] < start[0] and middle[-1] > start[-1]
    assert torch.allclose(end[:-1], torch.full((4,), 0.006, dtype=torch.float64)) and end[-1] == pytest.approx(0.976)
    algorithm = CASES["maml_pp_3_steps"][0]
    objective = AlgorithmObjective(float64_learner(algorithm), algorithm)
    objective.at_iteration(0)
    assert objective.step_weights is not None
    objective.at_iteration(100)  # past the annealing: the last step's loss alone, as plain MAML
    assert objective.step_weights is None


def test_cosine_meta_learning_rate() -> None:
    config = TrainConfig(n_iterations=100, meta_lr=1e-3, cosine_meta_lr=True, meta_lr_min=1e-5)
    assert config.meta_lr_at(0) == pytest.approx(1e-3)
    assert config.meta_lr_at(50) == pytest.approx((1e-3 + 1e-5) / 2)
    assert config.meta_lr_at(100) == pytest.approx(1e-5)
    assert TrainConfig(n_iterations=100).meta_lr_at(99) == 1e-3


def test_learner_round_trips_through_its_config() -> None:
    algorithm = Algorithm("metasgd", InnerLoop(0.4, 1, loss_fn=F.cross_entropy), learned_rates="per_weight",
                          head_only=True)
    learner = algorithm.new_learner(ConvNet(5))
    assert set(learner.split(dict(learner.named_parameters()))[1]) == head_names(learner.model) == {
        "classifier.weight", "classifier.bias"}
    rebuilt = build_model(learner.config())
    rebuilt.load_state_dict(learner.state_dict())
    assert rebuilt.config() == learner.config()
    assert learner.rates["classifier/weight"].shape == (1, 5, 256)  # 64 filters x 2 x 2


def test_bad_algorithm_settings_fail_early() -> None:
    with pytest.raises(ValueError, match="learned_rates"):
        Algorithm("x", InnerLoop(0.01, 1), learned_rates="per_task")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Reptile"):
        Algorithm("x", InnerLoop(0.01, 1), reptile=True, head_only=True)
    with pytest.raises(ValueError, match="lacks"):
        MetaLearner(SinusoidMLP(), {"net.9.weight": [1]}, 0.01)
