"""Few-shot scoring: scoring only some steps gives exactly those columns of the full curve."""
import pytest
import torch
import torch.nn.functional as F

from helpers import InnerLoop
from helpers.evaluate import accuracy, scores_after_steps
from helpers.models import ConvNet
from test_conv_meta_gradient import random_episodes


@pytest.mark.parametrize("task_batching", ["vmap", "loop"])
@pytest.mark.parametrize("metric", [None, accuracy])
def test_scored_steps_are_columns_of_the_full_curve(task_batching, metric):
    torch.manual_seed(0)
    model = ConvNet(3, hidden=8, in_channels=3, image_size=32, downsample="maxpool").double()
    params = dict(model.named_parameters())
    episodes = random_episodes(n_tasks=3, size=32, channels=3)
    inner = InnerLoop(0.5, 4, loss_fn=F.cross_entropy)
    full = scores_after_steps(model, params, episodes, inner, metric=metric, task_batching=task_batching)
    some = scores_after_steps(model, params, episodes, inner, metric=metric, task_batching=task_batching,
                              scored_steps=(4, 0, 2, 2))
    assert some.steps == [0, 2, 4] and full.steps == [0, 1, 2, 3, 4]
    assert torch.equal(some.per_task, full.per_task[:, [0, 2, 4]])
    assert some.at(2) == full.at(2) and not torch.equal(full.per_task[:, 0], full.per_task[:, 4])  # it adapted


def test_scored_steps_outside_the_run_are_refused():
    model = ConvNet(3, hidden=8).double()
    with pytest.raises(ValueError, match=r"scored_steps must be steps within 0..2, got \(0, 3\)"):
        scores_after_steps(model, dict(model.named_parameters()), random_episodes(),
                           InnerLoop(0.1, 2, loss_fn=F.cross_entropy), scored_steps=(0, 3))


def test_learned_rates_replace_the_fixed_step_and_unknown_batching_is_refused():
    """Rates equal to α give α's curve; doubled rates give the curve of 2α (helpers.maml.step_rate)."""
    torch.manual_seed(0)
    model = ConvNet(3, hidden=8).double()
    params = dict(model.named_parameters())
    episodes = random_episodes()
    inner = InnerLoop(0.1, 2, loss_fn=F.cross_entropy)
    rates = {name: torch.full((1,), 0.1, dtype=torch.float64) for name in params}
    same = scores_after_steps(model, params, episodes, inner, rates=rates)
    assert torch.allclose(same.per_task, scores_after_steps(model, params, episodes, inner).per_task, rtol=1e-12)
    doubled = scores_after_steps(model, params, episodes, inner, rates={k: 2 * r for k, r in rates.items()})
    twice_lr = scores_after_steps(model, params, episodes, InnerLoop(0.2, 2, loss_fn=F.cross_entropy))
    assert torch.allclose(doubled.per_task, twice_lr.per_task, rtol=1e-12)
    with pytest.raises(ValueError, match="task_batching must be 'vmap' or 'loop', got 'batched'"):
        scores_after_steps(model, params, episodes, inner, task_batching="batched")
