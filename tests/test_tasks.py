import math

import pytest
import torch

from helpers import sample_sinusoid_tasks, sinusoid


def test_shapes_ranges_and_labels():
    tasks = sample_sinusoid_tasks(200, 10, 15, generator=torch.Generator().manual_seed(0))
    assert tasks.x_support.shape == (200, 10, 1) and tasks.x_query.shape == (200, 15, 1)
    assert tasks.amplitude.min() >= 0.1 and tasks.amplitude.max() <= 5.0
    assert tasks.phase.min() >= 0 and tasks.phase.max() <= math.pi
    assert tasks.x_support.abs().max() <= 5.0
    expected = sinusoid(tasks.x_query, tasks.amplitude[:, None, None], tasks.phase[:, None, None])
    assert torch.equal(tasks.y_query, expected)


def test_query_defaults_to_k_and_half_range_support():
    tasks = sample_sinusoid_tasks(50, 5, generator=torch.Generator().manual_seed(0), support_x_range=(-5.0, 0.0))
    assert tasks.x_query.shape == (50, 5, 1)
    assert tasks.x_support.max() <= 0.0 and tasks.x_query.max() > 0.0


def test_same_seed_same_tasks_other_seed_other_tasks():
    a = sample_sinusoid_tasks(4, 5, generator=torch.Generator().manual_seed(3))
    b = sample_sinusoid_tasks(4, 5, generator=torch.Generator().manual_seed(3))
    c = sample_sinusoid_tasks(4, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.x_support, b.x_support) and torch.equal(a.amplitude, b.amplitude)
    assert not torch.equal(a.x_support, c.x_support)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_tasks=0, k_shot=5), "n_tasks"),
    (dict(n_tasks=2, k_shot=0), "k_shot"),
    (dict(n_tasks=2, k_shot=5, n_query=0), "n_query"),
    (dict(n_tasks=2, k_shot=5, support_x_range=(1.0, -1.0)), "support_x_range"),
])
def test_bad_requests_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sample_sinusoid_tasks(generator=torch.Generator(), **kwargs)
