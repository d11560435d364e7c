"""The headline numbers stored in each checkpoint's metadata after training."""
from __future__ import annotations

from typing import Any

from torch import nn

from .evaluate import evaluate_sinusoid


def experiment_metrics(experiment: str, model: nn.Module) -> dict[str, Any]:
    """K=5 test MSE after 1/5/10 steps (mean, CI, median), for the sinusoid experiments."""
    params = dict(model.named_parameters())
    curve = evaluate_sinusoid(model, params, k_shots=(5,))[5]
    return {f"k5_step{s}": {"mean": round(float(curve.mean[s]), 4), "ci95": round(float(curve.ci95[s]), 4),
                            "median": round(float(curve.median[s]), 4)} for s in (1, 5, 10)}
