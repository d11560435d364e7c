"""Checkpoints: weights plus what made them, loaded with a check that the architecture matches."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .models import build_model

FORMAT = "helpers-maml-checkpoint/1"


def stored_score(metrics: dict[str, Any], query: int, steps: int) -> dict[str, float] | None:
    """A few-shot scoring's accuracy with `query` images per class after `steps` steps, or None; the plain key holds
    the run's own `query_per_class` (K, or 15 in scorings from before both protocols were kept)."""
    if metrics.get("query_per_class") == query:
        return metrics.get(f"test_accuracy_step{steps}")
    return metrics.get(f"test_accuracy_{query}query_step{steps}")


@dataclass
class Checkpoint:
    """Everything needed to rebuild a model, resume its training, and say where it came from."""

    experiment: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    iteration: int
    train_config: dict[str, Any]
    command: str = ""
    loss_history: list[float] = field(default_factory=list)  # mean loss over each `log_every` iterations
    metrics: dict[str, Any] = field(default_factory=dict)
    validation_history: list[tuple[int, float]] = field(default_factory=list)  # (iteration, score)
    # how many tasks each validation score averages (None: not recorded); a change of count is not a change of model
    validation_tasks: list[int | None] = field(default_factory=list)
    # every scoring of this run, oldest first: {"iteration", "metrics", "command"}; `metrics` holds the latest only
    test_history: list[dict[str, Any]] = field(default_factory=list)
    optimizer_state: dict[str, Any] | None = None  # only needed to resume
    generator_state: torch.Tensor | None = None  # only needed to resume

    def build_model(self, device: torch.device | str = "cpu") -> nn.Module:
        """The model with these weights, on `device`, ready for `dict(model.named_parameters())`."""
        model = build_model(self.model_config)
        model.load_state_dict(self.state_dict)
        return model.to(device)

    def validation_points(self) -> list[tuple[int, float, int | None]]:
        """(iteration, score, tasks scored) for each validation check; checkpoints written before the task count
        was recorded give None for it."""
        tasks = list(self.validation_tasks) + [None] * (len(self.validation_history) - len(self.validation_tasks))
        return [(int(it), float(score), count) for (it, score), count in zip(self.validation_history, tasks)]

    def test_curve(self, query: int, steps: int) -> list[tuple[int, float, float]]:
        """(iteration, mean %, 95% interval) of each stored scoring with `query` images per class after `steps`."""
        points = [(entry["iteration"], stored_score(entry["metrics"], query, steps)) for entry in self.test_history]
        return [(iteration, score["mean"], score["ci95"]) for iteration, score in points if score is not None]

    def record_scores(self, scores: dict[str, Any]) -> None:
        """Make `scores` the current metrics and keep them in `test_history`, so that a leg's test scores outlive
        the next leg's; a rescoring at the same iteration replaces that iteration's entry."""
        self.metrics = dict(scores)
        earlier = [entry for entry in self.test_history if entry["iteration"] != self.iteration]
        entry = {"iteration": self.iteration, "metrics": dict(scores), "command": self.command}
        self.test_history = sorted(earlier + [entry], key=lambda e: e["iteration"])


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write atomically (temp file, then rename) so an interrupted save never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **checkpoint.__dict__}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, *, expected_model_config: dict[str, Any] | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; refuse anything else with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (train one with `python -m helpers train ...`)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path} is not a helpers checkpoint: torch.load failed ({type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a helpers checkpoint (expected format {FORMAT!r})")
    payload.pop("format")
    checkpoint = Checkpoint(**payload)
    if expected_model_config is not None and checkpoint.model_config != expected_model_config:
        raise ValueError(f"checkpoint {path} holds architecture {checkpoint.model_config}, "
                         f"but {expected_model_config} was expected")
    return checkpoint
