"""Which fast path each device takes: the one place where they are chosen.

Every path computes the same meta-gradient (tests/test_conv_meta_gradient.py, tests/test_cuda.py check each
against a plain float64 loop); they differ in speed only, and the speed depends on the device.

CPU, 2 cores, one thread per run (benchmarks/conv_meta_step.py, benchmarks/README.md): each cell's task batching
was measured (``FewShotCell.task_batching``: vmap for Omniglot 5-way 1-shot, a loop elsewhere, because a looped
task reaches torch's fused batch-norm kernel and frees its graph at once). Batch norm's double backward by
helpers.batch_norm's formulas pays where the support set's activations are large (MiniImagenet second order 1.3-1.4x,
Omniglot 20-way 5-shot 1.12x; 0.90x on Omniglot 5-way 5-shot). Channels-last activations pay for the MiniImagenet
net first order, in evaluation and 1-shot second order (1.3x), not 5-shot second order (0.83x) nor Omniglot.

CUDA (one H200, benchmarks/cuda_training_step.py, benchmarks/README.md "CUDA"): eager, the card waits on kernel
launches, not arithmetic, so tasks are batched with vmap in every cell (1.1-16x over the loop) and the whole
meta-gradient is replayed from one captured CUDA graph (helpers.cuda_graph; 1.1-8x more). Channels-last and the
batch-norm formulas are CPU measurements and stay off there. TF32 stays off: it moved the float32 meta-gradient
6-29% from float64 (3x to 1e5x the error without it) for 1.6-2.5x on Omniglot and nothing on MiniImagenet.
Other devices (Apple MPS) are unmeasured and take the CPU's choices, without graphs.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from .maml import TaskBatching

CUDA_GRAPHS_ENV_VAR = "MAML_CUDA_GRAPHS"  # "0" turns graph capture off (e.g. to profile kernel by kernel)


def task_batching_on(device: torch.device | str, cpu_choice: TaskBatching) -> TaskBatching:
    """How a meta-batch's tasks run on `device`: `cpu_choice` (measured per cell on the CPU), vmap on CUDA."""
    return "vmap" if torch.device(device).type == "cuda" else cpu_choice


def uses_cuda_graphs(device: torch.device | str) -> bool:
    """Whether training replays its meta-gradient from a captured CUDA graph on `device`."""
    return torch.device(device).type == "cuda" and os.environ.get(CUDA_GRAPHS_ENV_VAR, "1") != "0"


def conv_net_cpu_paths(dataset: str, n_way: int, k_shot: int, second_order: bool) -> dict[str, bool]:
    """ConvNet's CPU-only switches for a Table 1 cell: ``channels_last`` and ``double_backward_formulas``.

    Both are ignored off the CPU (helpers.models), so a net built for one device runs on any."""
    if dataset == "omniglot":
        return {"channels_last": False, "double_backward_formulas": second_order and n_way * k_shot >= 100}
    return {"channels_last": not second_order or k_shot == 1, "double_backward_formulas": second_order}


@contextlib.contextmanager
def float32_numerics(device: torch.device | str) -> Iterator[None]:
    """On CUDA, full float32 in convolutions and matrix products (TF32 off) for the block, then as before."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
