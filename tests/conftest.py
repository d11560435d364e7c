import pytest
import torch


@pytest.fixture(autouse=True)
def _float32_default():
    """Tests that switch to float64 must not leak it into others."""
    yield
    torch.set_default_dtype(torch.float32)


import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests import shared references from each other
