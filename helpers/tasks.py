"""The sinusoid task family of the MAML paper (Finn et al. 2017, section 5.1)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .batches import TaskBatch
from .checks import check_int_at_least, check_range

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


def sinusoid(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
    """y = A·sin(x − φ); amplitude and phase broadcast against x."""
    return amplitude * torch.sin(x - phase)


@dataclass(frozen=True)
class SinusoidTasks(TaskBatch):
    """A batch of regression tasks (x and y are (tasks, points, 1)) and the amplitude and phase of each."""

    amplitude: Tensor  # (tasks,)
    phase: Tensor  # (tasks,)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
             dtype: torch.dtype) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)


def sample_sinusoid_tasks(
    n_tasks: int,
    k_shot: int,
    n_query: int | None = None,
    *,
    generator: torch.Generator,
    support_x_range: tuple[float, float] = X_RANGE,
    query_x_range: tuple[float, float] = X_RANGE,
    dtype: torch.dtype = torch.float32,
) -> SinusoidTasks:
    """Draw tasks A∈U[0.1,5], φ∈U[0,π] and their points x∈U[x_range].

    `n_query` defaults to `k_shot`, as in the paper's training (K support + K query
    points per task). `support_x_range` lets the support points come from part of
    the input range only (the extrapolation demo); the query points always cover
    `query_x_range`. Sampling happens on the CPU generator, so the same seed gives
    the same tasks on every device; move them with `.to(device)`.
    """
    check_int_at_least("n_tasks", n_tasks, 1)
    check_int_at_least("k_shot", k_shot, 1)
    n_query = k_shot if n_query is None else check_int_at_least("n_query", n_query, 1)
    support_x_range = check_range("support_x_range", support_x_range)
    query_x_range = check_range("query_x_range", query_x_range)
    amplitude = _uniform((n_tasks,), *AMPLITUDE_RANGE, generator, dtype)
    phase = _uniform((n_tasks,), *PHASE_RANGE, generator, dtype)
    x_support = _uniform((n_tasks, k_shot, 1), *support_x_range, generator, dtype)
    x_query = _uniform((n_tasks, n_query, 1), *query_x_range, generator, dtype)
    a, p = amplitude[:, None, None], phase[:, None, None]
    return SinusoidTasks(x_support, sinusoid(x_support, a, p), x_query, sinusoid(x_query, a, p), amplitude, phase)


def oracle_inputs(x: Tensor, amplitude: Tensor, phase: Tensor) -> Tensor:
    """[x, A, φ] for every point: the oracle is told which task it is on. x is (tasks, n, 1)."""
    shape = x.shape[:-1] + (1,)
    return torch.cat([x, amplitude[:, None, None].expand(shape), phase[:, None, None].expand(shape)], dim=-1)
