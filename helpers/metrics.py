"""The headline numbers stored in each checkpoint's metadata after training."""
from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .evaluate import StepCurve, evaluate_fewshot, evaluate_sinusoid, evaluate_sinusoid_oracle, tune_inner_lr
from .fast_paths import float32_numerics, task_batching_on

PRETRAINED_LR_CANDIDATES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def _summary(curve: StepCurve, steps: tuple[int, ...]) -> dict[str, Any]:
    return {f"k5_step{s}": {"mean": round(float(curve.mean[s]), 4), "ci95": round(float(curve.ci95[s]), 4),
                            "median": round(float(curve.median[s]), 4)} for s in steps}


def fewshot_metrics(experiment: str, model: nn.Module, n_tasks: int = 600, *, inner_lr: float | None = None,
                    adapted: frozenset[str] | None = None, per_task: bool = False,
                    progress: bool = False) -> dict[str, Any]:
    """Test accuracy (%) over `n_tasks` seeded test tasks after 0, 1, the training's steps and 10 steps.

    Twice: as the paper's reference code scores it (K query images per class,
    `test_accuracy_step*`) and with 15 query images per class
    (`test_accuracy_15query_step*`); notebook 03 explains why they differ.
    `inner_lr` (default: the cell's) and `adapted` score a model trained with
    another recipe (tools/reference_recipe.py) on the same tasks. `per_task` also keeps each task's accuracy
    after the test steps (`..._step{N}_per_task`), so two models scored on the same tasks compare task by task
    (`paired_difference`), with an interval far tighter than their two intervals side by side.
    `progress` shows a bar over both passes (minutes for MiniImagenet on a CPU).
    """
    from .experiments import FEWSHOT_CELLS, fewshot_images

    cell = FEWSHOT_CELLS[experiment]
    params = {k: v.detach() for k, v in model.named_parameters()}
    device = next(iter(params.values())).device
    images = fewshot_images(cell.dataset, "test")
    metrics: dict[str, Any] = {"test_tasks": n_tasks, "query_per_class": cell.k_shot}
    steps = (0, 1, cell.n_inner_steps, cell.test_steps, 10)
    passes = (("test_accuracy", cell.k_shot), ("test_accuracy_15query", 15))
    bar = tqdm(total=len(passes) * n_tasks, desc=f"scoring {experiment} on {n_tasks} test tasks, twice",
               unit="task", disable=not progress, file=sys.stdout, mininterval=1)
    for prefix, n_query in passes:
        with float32_numerics(device):
            curve = evaluate_fewshot(model, params, images, n_way=cell.n_way, k_shot=cell.k_shot,
                                     n_query=n_query, n_tasks=n_tasks, inner_lr=inner_lr or cell.inner_lr, max_steps=10,
                                     scored_steps=steps, rotate=cell.dataset == "omniglot",
                                     task_batching=task_batching_on(device, cell.task_batching),
                                     adapted=adapted, on_chunk=bar.update)
        for step in curve.steps:
            mean, ci95 = curve.at(step)
            metrics[f"{prefix}_step{step}"] = {"mean": round(100 * mean, 2), "ci95": round(100 * ci95, 2)}
        if per_task:
            column = curve.per_task[:, curve.steps.index(cell.test_steps)]
            metrics[f"{prefix}_step{cell.test_steps}_per_task"] = [round(100 * float(a), 4) for a in column]
    bar.close()
    return metrics


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean of a − b, 95% CI half-width) over the same tasks: StepCurve's interval of the per-task differences."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need two equal lists of two or more tasks, got {len(a)} and {len(b)}")
    diffs = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    return StepCurve(diffs[:, None]).at(0)


def experiment_metrics(experiment: str, model: nn.Module, n_tasks: int = 600,
                       progress: bool = False) -> dict[str, Any]:
    """K=5 test MSE after 1/5/10 steps (mean, CI, median); the tuned step size for the pretrained model.

    `n_tasks` (few-shot cells only) trades precision for time: the first n of the same 600 seeded tasks;
    `progress` shows their bar (the sinusoid's scoring takes seconds).
    """
    from .experiments import FEWSHOT_CELLS

    if experiment in FEWSHOT_CELLS:
        return fewshot_metrics(experiment, model, n_tasks, progress=progress)
    params = {k: v.detach() for k, v in model.named_parameters()}
    if experiment == "sinusoid_oracle":
        return _summary(evaluate_sinusoid_oracle(model, params, k_shots=(5,))[5], (0,))
    inner_lr = 0.01
    metrics: dict[str, Any] = {}
    if experiment == "sinusoid_pretrained":
        inner_lr, scores = tune_inner_lr(model, params, PRETRAINED_LR_CANDIDATES)
        metrics["tuned_inner_lr"] = inner_lr
        metrics["validation_scores"] = {str(k): round(v, 4) for k, v in scores.items()}
    curve = evaluate_sinusoid(model, params, k_shots=(5,), inner_lr=inner_lr)[5]
    return {**metrics, **_summary(curve, (1, 5, 10))}
