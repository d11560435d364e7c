"""Why a trained few-shot cell stops rising: seen classes against unseen ones, and other inner step sizes.

Two measurements on one checkpoint, both with 15 query images per class (the steadier scoring) and the
cell's own protocol otherwise:

1. **Split gap.** Accuracy after 0..10 steps on episodes drawn from the meta-training, validation and test
   classes. Far higher on the training classes than on the others means the net has learnt its training
   classes rather than how to adapt: more iterations of the same recipe then buy little.
2. **Step size.** Accuracy on validation episodes (never the test ones) after 1, the training's and 10 steps
   for multiples of the cell's α. If a larger step scores higher, adaptation is limited by the step the net
   was trained for, which is where the reference code's loss scale (N times the mean, so N·α) differs.

    MINIIMAGENET_DIR=... python tools/plateau_check.py miniimagenet_5way_1shot_first_order --tasks 200
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from helpers.checkpoints import load_checkpoint
from helpers.evaluate import EVAL_SEED, VALIDATION_SEED, evaluate_fewshot
from helpers.experiments import FEWSHOT_CELLS, fewshot_images, get_experiment

SPLITS = ("train", "val", "test")
STEP_SIZE_FACTORS = (0.5, 1.0, 2.0, 5.0)


def accuracy_after_steps(name: str, model: torch.nn.Module, images: torch.Tensor, n_tasks: int,
                         steps: tuple[int, ...], inner_lr: float, seed: int) -> dict[int, tuple[float, float]]:
    """Accuracy (%, mean and 95% CI) after each of `steps`, on `n_tasks` of the cell's episodes drawn from `images`."""
    cell = FEWSHOT_CELLS[name]
    params = {k: v.detach() for k, v in model.named_parameters()}
    curve = evaluate_fewshot(model, params, images, n_way=cell.n_way, k_shot=cell.k_shot, n_tasks=n_tasks,
                             inner_lr=inner_lr, max_steps=max(steps), seed=seed, rotate=cell.dataset == "omniglot",
                             task_batching=cell.task_batching, scored_steps=steps)
    return {s: tuple(round(100 * v, 2) for v in curve.at(s)) for s in curve.steps}


def split_gap(name: str, model: torch.nn.Module, n_tasks: int, steps: tuple[int, ...],
              images: dict[str, torch.Tensor]) -> dict[str, dict[int, tuple[float, float]]]:
    """Accuracy after each of `steps` on episodes of each split, with the cell's α (the same seed for all)."""
    inner_lr = FEWSHOT_CELLS[name].inner_lr
    return {split: accuracy_after_steps(name, model, images[split], n_tasks, steps, inner_lr, EVAL_SEED)
            for split in SPLITS}


def step_sizes(name: str, model: torch.nn.Module, n_tasks: int, steps: tuple[int, ...], images: torch.Tensor,
               factors: tuple[float, ...] = STEP_SIZE_FACTORS) -> dict[float, dict[int, tuple[float, float]]]:
    """Accuracy after each of `steps` on validation episodes (never test ones), with α times each factor."""
    inner_lr = FEWSHOT_CELLS[name].inner_lr
    return {factor: accuracy_after_steps(name, model, images, n_tasks, steps, inner_lr * factor, VALIDATION_SEED)
            for factor in factors}


def table(title: str, rows: dict, steps: tuple[int, ...]) -> str:
    lines = [f"| {title} | " + " | ".join(f"after {s} step{'s' * (s != 1)}" for s in steps) + " |",
             "|---|" + "---|" * len(steps)]
    for key, by_step in rows.items():
        lines.append(f"| {key} | " + " | ".join(f"{by_step[s][0]:.2f} ± {by_step[s][1]:.2f}" for s in steps) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell", choices=sorted(FEWSHOT_CELLS))
    parser.add_argument("--checkpoint", type=Path, help="default: the cell's shipped checkpoint")
    parser.add_argument("--tasks", type=int, default=200, help="episodes per split and per step size")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    experiment, cell = get_experiment(args.cell), FEWSHOT_CELLS[args.cell]
    checkpoint = load_checkpoint(args.checkpoint or experiment.checkpoint_path,
                                 expected_model_config=experiment.make_model().config())
    model = checkpoint.build_model()
    steps = tuple(sorted({0, 1, cell.n_inner_steps, 10}))
    images = {split: fewshot_images(cell.dataset, split) for split in SPLITS}
    started = time.perf_counter()
    gap = split_gap(args.cell, model, args.tasks, steps, images)
    sizes = step_sizes(args.cell, model, args.tasks, steps, images["val"])
    print(f"{args.cell} after {checkpoint.iteration} iterations, {args.tasks} episodes per row, "
          f"15 query images per class, accuracy %:\n")
    print(table("classes", gap, steps) + "\n")
    print(table("validation, α times", sizes, steps) + "\n")
    print(f"{time.perf_counter() - started:.0f} s")
    if args.out:
        result = {"cell": args.cell, "iteration": checkpoint.iteration, "tasks": args.tasks, "split_gap": gap,
                  "step_size_factor": {str(k): v for k, v in sizes.items()}}
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
