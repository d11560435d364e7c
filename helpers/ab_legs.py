"""The recipe A/B's legs as stored in `data/ab/`: what `tools/reference_recipe.py` trains and notebook 04 draws.

Each leg is one variant of a Table 1 cell's recipe (`VARIANTS`), trained from the same seed on the same episodes:
a checkpoint `NAME_VARIANT.pt` with its loss and validation curves, and beside it `NAME_VARIANT.scores.json`, its
600-task test scores at the iterations where the leg stopped to score them (a later checkpoint does not carry them).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoints import load_checkpoint
from .experiments import FEWSHOT_CELLS, FewShotCell

VARIANTS = ("project", "loss", "reference")  # this project's recipe; the reference loss; its loss and net
AB_DIR = Path(__file__).resolve().parent.parent / "data" / "ab"  # the legs' checkpoints, small enough to commit


def per_image(cell: FewShotCell, summed: bool) -> float:
    """What turns a meta-batch's training loss into the mean loss per query image (Σ/K over N·Q images: K/(N·Q))."""
    return cell.k_shot / (cell.n_way * cell.n_query) if summed else 1.0


def leg_path(name: str, variant: str, checkpoint_dir: Path = AB_DIR) -> Path:
    return Path(checkpoint_dir) / f"{name}_{variant}.pt"


def scores_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".scores.json")


def read_scores(checkpoint: Path) -> dict[str, Any]:
    """{iteration as a string: the 600-task scores there}, empty where none were taken."""
    path = scores_path(checkpoint)
    return json.loads(path.read_text()) if path.exists() else {}


def summary(path: Path) -> dict[str, Any]:
    """A leg's curves (loss per query image per block, validation accuracy %) and its test scores by iteration.

    `validation_tasks` holds, point by point, how many tasks each validation score averages (None where unknown).
    """
    saved = load_checkpoint(path)
    points = saved.validation_points()
    name, variant = saved.experiment.rsplit("_", 1)
    cell = FEWSHOT_CELLS[name]
    summed = variant in ("loss", "reference")
    return {"cell": name, "variant": variant, "iteration": saved.iteration,
            "block": saved.train_config["log_every"],
            "validation_tasks": [tasks for _, _, tasks in points],
            "loss_per_image": [round(loss * per_image(cell, summed), 4) for loss in saved.loss_history],
            "validation": [(it, round(100 * score, 2)) for it, score, _ in points],
            "test_at_iteration": read_scores(path)}


def stored_legs(name: str, checkpoint_dir: Path = AB_DIR) -> dict[str, dict[str, Any]]:
    """The summary of every stored leg of cell `name`, by variant, in the order of `VARIANTS`."""
    return {variant: summary(leg_path(name, variant, checkpoint_dir)) for variant in VARIANTS
            if leg_path(name, variant, checkpoint_dir).exists()}
