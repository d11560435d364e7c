"""A batch of tasks: the one type every meta-learning function takes.

Each task has a support set (to adapt on) and a query set (to be scored on);
tensors carry a leading task axis. The sinusoid tasks and the few-shot
episodes are task batches with a few extra fields each (amplitude and phase;
classes and rotations).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator, TypeVar

import torch
from torch import Tensor

Batch = TypeVar("Batch", bound="TaskBatch")


@dataclass(frozen=True)
class TaskBatch:
    x_support: Tensor  # (tasks, K, ...)
    y_support: Tensor  # (tasks, K, ...)
    x_query: Tensor  # (tasks, Q, ...)
    y_query: Tensor  # (tasks, Q, ...)

    def __post_init__(self) -> None:
        if self.x_support.ndim < 2 or self.x_support.shape[0] < 1:
            raise ValueError(f"x_support must have a leading task axis of length >= 1, "
                             f"got shape {tuple(self.x_support.shape)}")
        if self.x_support.shape[1] < 1:
            raise ValueError(f"k_shot (x_support.shape[1]) must be >= 1, got {self.x_support.shape[1]}")
        n_tasks = {name: getattr(self, name).shape[0] for name in ("x_support", "y_support", "x_query", "y_query")}
        if len(set(n_tasks.values())) != 1:
            raise ValueError(f"every tensor needs the same number of tasks on its first axis, got {n_tasks}")

    def to(self: Batch, device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
           non_blocking: bool = False) -> Batch:
        """On `device`; `dtype` converts the floating-point tensors only (labels stay integers). `non_blocking`
        lets a copy from pinned memory overlap the GPU's work (helpers.prefetch)."""
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None,
                        non_blocking=non_blocking)
        return type(self)(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def __len__(self) -> int:
        return self.x_support.shape[0]

    def __getitem__(self: Batch, index: int | slice) -> Batch:
        """Select tasks; an int keeps the task axis (length 1) so shapes stay batched."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @property
    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(x_support, y_support, x_query, y_query): what `vmap` maps over."""
        return self.x_support, self.y_support, self.x_query, self.y_query

    def tasks(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Each task's (x_support, y_support, x_query, y_query), without the task axis."""
        return zip(*self.tensors)
