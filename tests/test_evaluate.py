"""Few-shot scoring: scoring only some steps gives exactly those columns of the full curve."""
import pytest
import torch
import torch.nn.functional as F

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
    options = dict(inner_lr=0.5, max_steps=4, loss_fn=F.cross_entropy, metric=metric, task_batching=task_batching)
    full = scores_after_steps(model, params, *episodes, **options)
    some = scores_after_steps(model, params, *episodes, scored_steps=(4, 0, 2, 2), **options)
    assert some.steps == [0, 2, 4] and full.steps == [0, 1, 2, 3, 4]
    assert torch.equal(some.per_task, full.per_task[:, [0, 2, 4]])
    assert some.at(2) == full.at(2) and not torch.equal(full.per_task[:, 0], full.per_task[:, 4])  # it adapted


def test_scored_steps_outside_the_run_are_refused():
    model = ConvNet(3, hidden=8).double()
    with pytest.raises(ValueError, match=r"scored_steps must be steps within 0..2, got \(0, 3\)"):
        scores_after_steps(model, dict(model.named_parameters()), *random_episodes(), inner_lr=0.1, max_steps=2,
                           loss_fn=F.cross_entropy, scored_steps=(0, 3))
