"""Where tensors live and how runs are made repeatable: one place decides both."""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

DEVICE_ENV_VAR = "MAML_DEVICE"


def default_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else Apple MPS, else CPU.

    `prefer` (or the environment variable MAML_DEVICE) overrides the choice, so a
    lecturer can force the CPU on a laptop whose GPU is busy.
    """
    choice = prefer if prefer is not None else os.environ.get(DEVICE_ENV_VAR)
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device={str(choice)!r} was asked for, but CUDA is not available here; "
                               f"use 'cpu' or leave the device unset")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device={str(choice)!r} was asked for, but Apple MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a CPU generator for explicit sampling.

    The helpers draw their own randomness from a generator that is passed in; the
    global seeds only cover code (e.g. in a notebook) that does not.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def machine_name(device: torch.device | None = None) -> str:
    """The processor (or GPU) that a stored timing was measured on, for the figures that quote it; without a
    `device`, the GPU if there is one."""
    on_gpu = torch.cuda.is_available() if device is None else device.type == "cuda"
    if on_gpu:
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
