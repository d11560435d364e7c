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
each block of iterations compares directly; validation is the training's own (100 validation tasks).

    OMNIGLOT_DIR=... python tools/reference_recipe.py omniglot_20way_1shot --variant loss --iterations 500
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers.evaluate import VALIDATION_SEED, evaluate_fewshot
from helpers.experiments import FEWSHOT_CELLS, FewShotCell, fewshot_images, get_experiment
from helpers.maml import LossFn
from helpers.models import BatchStatsNorm2d, ConvNet
from helpers.train import train

VARIANTS = ("project", "loss", "reference")


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


def per_image(cell: FewShotCell, summed: bool) -> float:
    """What turns a meta-batch's training loss into the mean loss per query image (Σ/K over N·Q images: K/(N·Q))."""
    return cell.k_shot / (cell.n_way * cell.n_query) if summed else 1.0


def run(name: str, variant: str, iterations: int, validate_every: int, seed: int = 0, block: int = 50) -> dict:
    """Train `name` with `variant` from scratch; per-image loss per `block` iterations and validation scores."""
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
    images = fewshot_images(cell.dataset, "val")

    def validate(m: nn.Module) -> float:  # the same inner steps, written as steps on the mean loss
        curve = evaluate_fewshot(m, dict(m.named_parameters()), images, n_way=cell.n_way, k_shot=cell.k_shot,
                                 n_tasks=100, inner_lr=cell.inner_lr * (cell.n_way if summed else 1),
                                 max_steps=cell.n_inner_steps, seed=VALIDATION_SEED,
                                 rotate=cell.dataset == "omniglot", task_batching=cell.task_batching, adapted=adapted,
                                 scored_steps=(cell.n_inner_steps,))
        return float(curve.mean[-1])

    started = time.perf_counter()
    result = train(model, objective, experiment.make_sampler(),
                   replace(experiment.train_config, n_iterations=iterations, seed=seed, log_every=block),
                   experiment=f"{name}_{variant}", objective_config={**experiment.objective_config, "variant": variant},
                   validate=validate, validate_every=validate_every, progress=False)
    return {"cell": name, "variant": variant, "iterations": iterations, "seed": seed,
            "seconds": round(time.perf_counter() - started, 1),
            "block": block, "loss_per_image": [round(loss * per_image(cell, summed), 4) for loss in result.loss_history],
            "validation": [(it, round(100 * score, 2)) for it, score in result.checkpoint.validation_history]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cell", choices=sorted(FEWSHOT_CELLS))
    parser.add_argument("--variant", choices=VARIANTS, default="loss")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--validate-every", type=int, default=250, help="a multiple of 50")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    result = run(args.cell, args.variant, args.iterations, args.validate_every, args.seed)
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
