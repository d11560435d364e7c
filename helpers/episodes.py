"""N-way K-shot episodes drawn from an image data set held as (classes, drawings, H, W) uint8."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .batches import TaskBatch
from .checks import check_int_at_least


@dataclass(frozen=True)
class FewShotTasks(TaskBatch):
    """A batch of N-way classification tasks: x is (tasks, N*K or N*Q, C, H, W) in [0, 1], y holds labels 0..N-1."""

    classes: Tensor  # (tasks, N): which data-set class (index into the split) each label is
    rotations: Tensor  # (tasks, N): quarter turns applied to each class


def sample_episodes(images: Tensor, n_tasks: int, n_way: int, k_shot: int, n_query: int, *,
                    generator: torch.Generator, rotate: bool = True) -> FewShotTasks:
    """Draw `n_tasks` episodes from `images` (classes, drawings, H, W) or (classes, drawings, C, H, W).

    Each task takes N distinct classes, K + Q distinct drawings of each (K to
    adapt on, Q to score on) and, with `rotate`, turns every class by its own
    random multiple of 90° (the rotated character counts as a new class, as in
    Santoro et al. 2016 and the MAML paper).
    """
    n_classes, n_drawings = images.shape[:2]
    check_int_at_least("n_tasks", n_tasks, 1)
    check_int_at_least("k_shot", k_shot, 1)
    check_int_at_least("n_query", n_query, 1)
    check_int_at_least("n_way", n_way, 1)
    if n_way > n_classes:
        raise ValueError(f"n_way={n_way} is larger than the {n_classes} classes in this split")
    if k_shot + n_query > n_drawings:
        raise ValueError(f"k_shot + n_query = {k_shot} + {n_query} is more than the {n_drawings} examples per class")
    classes = torch.rand(n_tasks, n_classes, generator=generator).argsort(1)[:, :n_way]  # (T, N)
    drawings = torch.rand(n_tasks, n_way, n_drawings, generator=generator).argsort(-1)[..., : k_shot + n_query]
    x = images[classes[..., None], drawings]  # (T, N, K+Q, [C,] H, W)
    rotations = (torch.randint(0, 4, (n_tasks, n_way), generator=generator) if rotate
                 else torch.zeros(n_tasks, n_way, dtype=torch.long))
    for quarter_turns in (1, 2, 3):
        chosen = rotations == quarter_turns
        x[chosen] = torch.rot90(x[chosen], quarter_turns, dims=(-2, -1))
    if x.ndim == 5:
        x = x.unsqueeze(3)  # add a channel axis for grey images
    x = x.float() / 255.0
    labels = torch.arange(n_way)[None, :, None]  # (1, N, 1)

    def split(part: Tensor, count: int) -> tuple[Tensor, Tensor]:
        y = labels.expand(n_tasks, n_way, count).reshape(n_tasks, n_way * count)
        return part.reshape(n_tasks, n_way * count, *part.shape[3:]), y

    x_support, y_support = split(x[:, :, :k_shot], k_shot)
    x_query, y_query = split(x[:, :, k_shot:], n_query)
    return FewShotTasks(x_support, y_support, x_query, y_query, classes, rotations)
