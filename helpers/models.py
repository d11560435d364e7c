"""The networks of the paper, each describable by a small config so checkpoints can check them."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SinusoidMLP(nn.Module):
    """The paper's regressor: 1-40-40-1 with ReLU.

    `in_features` > 1 serves the oracle, which also sees the amplitude and phase.
    """

    def __init__(self, in_features: int = 1, hidden: tuple[int, ...] = (40, 40)) -> None:
        super().__init__()
        sizes = (in_features, *hidden)
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)
        self.in_features, self.hidden = in_features, tuple(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in_features) -> (..., 1)
        return self.net(x)

    def config(self) -> dict[str, Any]:
        return {"name": "SinusoidMLP", "in_features": self.in_features, "hidden": list(self.hidden)}


MODELS: dict[str, type[nn.Module]] = {"SinusoidMLP": SinusoidMLP}


def build_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from the config that its `config()` returned."""
    kwargs = dict(config)
    name = kwargs.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r} in config; known: {sorted(MODELS)}")
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(kwargs["hidden"])
    return MODELS[name](**kwargs)
