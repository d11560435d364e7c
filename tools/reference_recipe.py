"""Short runs of a few-shot cell with the reference code's loss and net, beside this project's recipe.

The paper's reference code (cbfinn/maml) differs from `helpers`' few-shot recipe in three ways the paper does not
state, and any of them could explain part of a gap to Table 1:

1. **Loss scale.** `utils.xent` returns each image's cross-entropy divided by K, and `tf.gradients` of that vector
   differentiates its sum: the loss is Σ cross-entropy / K, N times the mean that `helpers` uses. An inner step of
   size α there is a step of N·α on the mean (Omniglot: 0.4·5 = 0.1·20 = 2.0; MiniImagenet: 0.01·5 = 0.05).
2. **Batch norm.** `tf.contrib.layers.batch_norm` with its defaults: a shift and no scale, ε = 10⁻³, and the shift is
   a variable outside the adapted weights, so it is meta-learned but never adapted in the inner loop.
3. **Omniglot's head.** The 2x2 feature map is averaged to 64 features, with weights drawn from N(0, 1).

`--variant project` runs the cell as `python -m helpers train` does; `loss` changes (1) only; `reference` changes
all three. Every variant starts from the same seed and meets the same episodes, so the per-image training loss of
each block of iterations compares directly.

Each variant is a leg with its own checkpoint in `data/ab/` that the same command resumes (`--minutes` ends it
with a checkpoint, as `python -m helpers train` does). It is validated every `--validate-every` iterations on
`--validation-tasks` validation tasks, and at each `--score-at` iteration it stops to score the 600 test tasks
both ways (K and 15 query images per class), with the inner steps written as steps on the mean loss, before
going on. `--report` prints where every leg in `data/ab/` stands.

    MINIIMAGENET_DIR=... python tools/reference_recipe.py miniimagenet_5way_1shot_first_order --variant reference \
        --until 6000 --minutes 120
    python tools/reference_recipe.py --report
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers.ab_legs import AB_DIR, VARIANTS, leg_path, read_scores, scores_path, summary
from helpers.checkpoints import load_checkpoint
from helpers.evaluate import VALIDATION_SEED, evaluate_fewshot
from helpers.experiments import FEWSHOT_CELLS, FewShotCell, MAMLObjective, fewshot_images, get_experiment
from helpers.maml import LossFn
from helpers.metrics import fewshot_metrics
from helpers.models import BatchStatsNorm2d, ConvNet
from helpers.train import train



class SpatialMean(nn.Module):
    """The reference code's Omniglot head input: the last feature map averaged over its pixels."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


def summed_over_shots(k_shot: int) -> LossFn:
    """The reference code's classification loss: Σ cross-entropy / K (N times the mean)."""
    return lambda logits, labels: F.cross_entropy(logits, labels, reduction="sum") / k_shot


def reference_net(model: ConvNet, cell: FewShotCell) -> frozenset[str]:
    """Make `model` the reference code's net in place; return the names the inner loop adapts."""
    for module in model.modules():
        if isinstance(module, BatchStatsNorm2d):
            del module.weight  # no scale: a constant 1, so the fused kernel still applies
            module.register_buffer("weight", torch.ones_like(module.bias))
            module.eps = 1e-3
    if cell.dataset == "omniglot":
        model.features[-1] = SpatialMean()
        model.classifier = nn.Linear(model.config()["hidden"], cell.n_way)
        nn.init.normal_(model.classifier.weight)
        nn.init.zeros_(model.classifier.bias)
    shifts = {f"{name}.bias" for name, m in model.named_modules() if isinstance(m, BatchStatsNorm2d)}
    return frozenset(name for name, _ in model.named_parameters() if name not in shifts)


@dataclass
class Variant:
    """A cell trained with one variant of the recipe: its net, objective and how its inner steps are scored."""

    cell: FewShotCell
    model: ConvNet
    objective: MAMLObjective
    adapted: frozenset[str] | None  # None: every parameter
    inner_lr: float  # the inner step as a step on the mean loss (N·α for the summed loss)
    summed: bool


def make_variant(name: str, variant: str, seed: int = 0) -> Variant:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    cell, experiment = FEWSHOT_CELLS[name], get_experiment(name)
    model = experiment.new_model(seed)
    adapted = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if variant == "reference":
            adapted = reference_net(model, cell)
    summed = variant in ("loss", "reference")
    objective = experiment.make_objective(model)  # what `python -m helpers train` steps with; then the variant's
    objective.inner = replace(objective.inner, adapted=adapted,  # loss and adapted names in its one inner loop
                              loss_fn=summed_over_shots(cell.k_shot) if summed else F.cross_entropy)
    return Variant(cell, model, objective, adapted, cell.inner_lr * (cell.n_way if summed else 1), summed)


def validator(v: Variant, n_tasks: int) -> Callable[[nn.Module], float]:
    """Accuracy after the training's steps on the first `n_tasks` validation tasks (15 query images per class)."""
    images = fewshot_images(v.cell.dataset, "val")

    def validate(model: nn.Module) -> float:
        curve = evaluate_fewshot(model, dict(model.named_parameters()), images, n_way=v.cell.n_way,
                                 k_shot=v.cell.k_shot, n_tasks=n_tasks, inner_lr=v.inner_lr,
                                 max_steps=v.cell.n_inner_steps, seed=VALIDATION_SEED,
                                 rotate=v.cell.dataset == "omniglot", task_batching=v.cell.task_batching,
                                 adapted=v.adapted, scored_steps=(v.cell.n_inner_steps,))
        return float(curve.mean[-1])
    return validate


def leg(name: str, variant: str, *, until: int, minutes: float | None = None, validate_every: int = 500,
        validation_tasks: int = 300, score_at: Sequence[int] = (2000, 4000, 6000), test_tasks: int = 600,
        seed: int = 0, checkpoint_dir: Path = AB_DIR, block: int = 50) -> dict[str, Any]:
    """Train `variant` of `name` towards iteration `until`, resuming its checkpoint; score each `score_at` reached.

    Returns `summary(...)` of the leg. The test scores of iteration `m` are kept beside the checkpoint, in
    `scores_path(...)` under `str(m)` (a checkpoint written later in training does not carry them).
    """
    path = leg_path(name, variant, checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    experiment = get_experiment(name)
    config = replace(experiment.train_config, seed=seed, log_every=block)  # the paper's schedule; `until` stops it
    objective_config = {**experiment.objective_config, "variant": variant, "validation_tasks": validation_tasks}
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    milestones = sorted(m for m in set(score_at) if m <= until)
    while True:
        v = make_variant(name, variant, seed)
        iteration, scored = 0, read_scores(path)
        if scored and not path.exists():
            raise FileExistsError(f"{scores_path(path)} holds scores of a leg whose checkpoint {path} is gone; "
                                  f"remove it to start the leg afresh")
        if path.exists():
            saved = load_checkpoint(path, expected_model_config=v.model.config())
            iteration = saved.iteration
            if iteration in milestones and str(iteration) not in scored:  # reached, not yet scored
                started = time.perf_counter()
                scored[str(iteration)] = _score(v, name, saved.state_dict, test_tasks)
                scores_path(path).write_text(json.dumps(scored, indent=1) + "\n")
                print(f"{name} {variant}: iteration {iteration} scored on {test_tasks} test tasks in "
                      f"{time.perf_counter() - started:.0f} s: {_headline(v.cell, scored[str(iteration)])}",
                      flush=True)
        remaining = None if deadline is None else deadline - time.monotonic()
        if iteration >= until or (remaining is not None and remaining <= 0):
            return summary(path)
        stop = min([m for m in milestones if m > iteration] + [until])
        result = train(v.model, v.objective, experiment.make_sampler(), config, experiment=f"{name}_{variant}",
                       objective_config=objective_config, checkpoint_path=path,
                       command="python tools/reference_recipe.py " + f"{name} --variant {variant} --until {until}",
                       validate=validator(v, validation_tasks), validate_every=validate_every,
                       validation_tasks=validation_tasks, progress=False,
                       stop_after_seconds=remaining, stop_at_iteration=stop)
        if result.iteration < stop:  # out of time: the checkpoint resumes
            return summary(path)


def _score(v: Variant, name: str, state_dict: dict[str, Tensor], test_tasks: int) -> dict[str, Any]:
    v.model.load_state_dict(state_dict)
    return fewshot_metrics(name, v.model, test_tasks, inner_lr=v.inner_lr, adapted=v.adapted, per_task=True)


def rescore(name: str, variant: str, *, test_tasks: int = 600, seed: int = 0, checkpoint_dir: Path = AB_DIR) -> dict[str, Any]:
    """Score a leg's checkpoint again at the iteration it holds, keeping each task's accuracy.

    For scores taken before they were kept: the same seeded tasks must give the stored means and intervals again,
    else the checkpoint is not the one those scores came from and nothing is written.
    """
    path = leg_path(name, variant, checkpoint_dir)
    saved = load_checkpoint(path)
    v = make_variant(name, variant, seed)
    scored = read_scores(path)
    scores = _score(v, name, saved.state_dict, test_tasks)
    stored = scored.get(str(saved.iteration))
    if stored is not None:
        for key, value in stored.items():
            if isinstance(value, dict) and any(abs(value[part] - scores[key][part]) > 0.01
                                               for part in ("mean", "ci95")):
                raise RuntimeError(f"{path} at {saved.iteration}: {key} scores {scores[key]['mean']} ± "
                                   f"{scores[key]['ci95']}%, stored {value['mean']} ± {value['ci95']}%: "
                                   f"not the checkpoint those scores came from")
    scored[str(saved.iteration)] = scores
    scores_path(path).write_text(json.dumps(scored, indent=1) + "\n")
    return scores


def _headline(cell: FewShotCell, scores: dict[str, Any]) -> str:
    parts = []
    for prefix, label in (("test_accuracy", f"{cell.k_shot} query/class"), ("test_accuracy_15query", "15")):
        s = scores[f"{prefix}_step{cell.test_steps}"]
        parts.append(f"{s['mean']:.2f} ± {s['ci95']:.2f}% ({label})")
    return ", ".join(parts) + f" after {cell.test_steps} steps"


def report(checkpoint_dir: Path = AB_DIR) -> None:
    for path in sorted(Path(checkpoint_dir).glob("*.pt")):
        s = summary(path)
        cell = FEWSHOT_CELLS[s["cell"]]
        last = s["validation"][-1] if s["validation"] else None
        print(f"{s['cell']} {s['variant']}: {s['iteration']} iterations"
              + (f", validation {last[1]:.2f}% at {last[0]}" if last else ""))
        for it, scores in sorted(s["test_at_iteration"].items(), key=lambda kv: int(kv[0])):
            print(f"  test at {it}: {_headline(cell, scores)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell", nargs="?", choices=sorted(FEWSHOT_CELLS))
    parser.add_argument("--variant", choices=VARIANTS, default="loss")
    parser.add_argument("--until", type=int, default=6000, help="the iteration to train to")
    parser.add_argument("--minutes", type=float, help="stop after about this many minutes; the same command resumes")
    parser.add_argument("--validate-every", type=int, default=500, help="a multiple of 50")
    parser.add_argument("--validation-tasks", type=int, default=300)
    parser.add_argument("--score-at", type=int, nargs="*", default=[2000, 4000, 6000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per leg, legs side by side)")
    parser.add_argument("--checkpoint-dir", type=Path, default=AB_DIR)
    parser.add_argument("--report", action="store_true", help="print where every leg stands and exit")
    parser.add_argument("--out", type=Path, help="also write the leg's summary as JSON here")
    parser.add_argument("--rescore", action="store_true",
                        help="score the leg's checkpoint again, keeping each task's accuracy, and exit")
    args = parser.parse_args()
    if args.report:
        report(args.checkpoint_dir)
        return
    if args.cell is None:
        parser.error("name a cell, or pass --report")
    torch.set_num_threads(args.threads)
    if args.rescore:
        scores = rescore(args.cell, args.variant, seed=args.seed, checkpoint_dir=args.checkpoint_dir)
        print(f"{args.cell} {args.variant}: {_headline(FEWSHOT_CELLS[args.cell], scores)}")
        return
    result = leg(args.cell, args.variant, until=args.until, minutes=args.minutes, validate_every=args.validate_every,
                 validation_tasks=args.validation_tasks, score_at=args.score_at, seed=args.seed,
                 checkpoint_dir=args.checkpoint_dir)
    report(args.checkpoint_dir)  # where every leg stands now (the summary's curves and per-task scores are long)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
