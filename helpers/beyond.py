"""Notebook 05's experiments: MAML's successors trained side by side, and what MAML's inner steps cost.

    python -m helpers.beyond train [--only NAME ...] [--minutes M]   # train (or resume) the variants' checkpoints
    python -m helpers.beyond table                                   # score them -> data/beyond/table.json
    python -m helpers.beyond cost                                    # time and memory vs steps -> data/beyond/cost.json
    python -m helpers.beyond time                                    # re-time the table's rows here, quietly
    python -m helpers.beyond all                                     # the three, in that order

Every variant runs on the same training loop and is scored on the same seeded
test tasks as the paper's rows: the sinusoid with the paper's schedule
(K=10, meta-batch 25, Adam 1e-3, 70,000 iterations) and Omniglot 5-way 1-shot
with one shorter, equal budget (OMNIGLOT_ITERATIONS) for every algorithm.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .algorithms import Algorithm, AlgorithmObjective
from .checkpoints import load_checkpoint, save_checkpoint
from .device import machine_name
from .episodes import sample_episodes
from .evaluate import SINUSOID_DIVERGED_MSE, StepCurve, accuracy, evaluate_fewshot, scores_after_steps, \
    sinusoid_test_tasks
from .maml import InnerLoop
from .models import ConvNet, MetaLearner, SinusoidMLP
from .tasks import sample_sinusoid_tasks
from .train import TrainConfig, train
from .widgets import Learner

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "data" / "checkpoints" / "beyond"
RESULTS = ROOT / "data" / "beyond"
SINUSOID_ITERATIONS = 70_000  # the paper's schedule
OMNIGLOT_ITERATIONS = 400  # one equal budget for every algorithm on Omniglot 5-way 1-shot
MSL_FRACTION = 0.1  # MAML++: the multi-step loss anneals over the first tenth of training


@dataclass(frozen=True)
class Variant:
    """One algorithm on one benchmark, with the budget it is trained for."""

    name: str
    benchmark: str  # "sinusoid" or "omniglot"
    label: str  # how tables and plots name it
    algorithm: Algorithm
    n_iterations: int
    task_batching: str = "vmap"
    seed: int = 0

    @property
    def checkpoint_path(self) -> Path:
        return CHECKPOINTS / f"{self.name}.pt"

    def objective_config(self) -> dict[str, Any]:
        """What the checkpoint records about the algorithm (and what a resume must match)."""
        a, inner = self.algorithm, self.algorithm.inner
        return {"objective": "algorithm", "benchmark": self.benchmark, "algorithm": a.name,
                "inner_lr": inner.lr, "n_inner_steps": inner.steps, "first_order": inner.first_order,
                "loss": inner.loss_fn.__name__, "learned_rates": a.learned_rates, "head_only": a.head_only,
                "multi_step_loss_iterations": a.multi_step_loss_iterations, "reptile": a.reptile,
                "task_batching": self.task_batching}

    def train_config(self) -> TrainConfig:
        log_every, checkpoint_every = (1_000, 10_000) if self.benchmark == "sinusoid" else (50, 100)
        return TrainConfig(n_iterations=self.n_iterations, meta_lr=1e-3, seed=self.seed, log_every=log_every,
                           checkpoint_every=checkpoint_every, cosine_meta_lr=self.algorithm.cosine_meta_lr)

    def new_learner(self) -> MetaLearner:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = SinusoidMLP() if self.benchmark == "sinusoid" else ConvNet(5)
        return self.algorithm.new_learner(model)


def _sinusoid(name: str, label: str, steps: int = 1, lr: float = 0.01, **options: Any) -> Variant:
    first_order = options.pop("first_order", False)
    inner = InnerLoop(lr, steps, first_order=first_order)
    if options.get("multi_step_loss_iterations") == "auto":
        options["multi_step_loss_iterations"] = int(MSL_FRACTION * SINUSOID_ITERATIONS)
    return Variant(f"sinusoid_{name}", "sinusoid", label, Algorithm(name, inner, **options), SINUSOID_ITERATIONS)


def _omniglot(name: str, label: str, steps: int = 1, lr: float = 0.4, **options: Any) -> Variant:
    first_order = options.pop("first_order", False)
    inner = InnerLoop(lr, steps, first_order=first_order, loss_fn=F.cross_entropy)
    if options.get("multi_step_loss_iterations") == "auto":
        options["multi_step_loss_iterations"] = int(MSL_FRACTION * OMNIGLOT_ITERATIONS)
    return Variant(f"omniglot_5way_1shot_{name}", "omniglot", label, Algorithm(name, inner, **options),
                   OMNIGLOT_ITERATIONS)


# The sinusoid's MAML row is the shipped data/checkpoints/sinusoid_maml.pt (same loop, same schedule).
# MAML++ and the multi-step MAML take 5 steps (what they are for). Reptile needs several, larger steps: with
# α·steps small its direction θ − φ is the joint-training gradient (Nichol et al. use α 0.02 on the sinusoid).
# The rest keep the paper's single step and α.
VARIANTS: dict[str, Variant] = {v.name: v for v in [
    _sinusoid("maml_5steps", "MAML, 5 steps", steps=5),
    _sinusoid("first_order_maml", "first-order MAML", first_order=True),
    _sinusoid("reptile", "Reptile (5 steps, α 0.02)", steps=5, lr=0.02, reptile=True),
    _sinusoid("anil", "ANIL", head_only=True),
    _sinusoid("meta_sgd", "Meta-SGD", learned_rates="per_weight"),
    _sinusoid("maml_plus_plus", "MAML++ (5 steps)", steps=5, learned_rates="per_layer_step",
              multi_step_loss_iterations="auto", cosine_meta_lr=True),
    _omniglot("maml", "MAML"),
    _omniglot("first_order_maml", "first-order MAML", first_order=True),
    _omniglot("reptile", "Reptile (5 steps, α 0.1)", steps=5, lr=0.1, reptile=True),
    _omniglot("anil", "ANIL", head_only=True),
    _omniglot("meta_sgd", "Meta-SGD", learned_rates="per_weight"),
    _omniglot("maml_plus_plus", "MAML++ (5 steps, α 0.1)", steps=5, lr=0.1, learned_rates="per_layer_step",
              multi_step_loss_iterations="auto", cosine_meta_lr=True),
]}


def task_sampler(variant: Variant) -> Callable[[torch.Generator], Any]:
    """The meta-batches a variant trains on: the paper's sinusoid batches (25 tasks, K=10) or Omniglot 5-way 1-shot
    (32 tasks, 1 query image per class), drawn from the generator the training loop passes."""
    if variant.benchmark == "sinusoid":
        return lambda g: sample_sinusoid_tasks(25, 10, 10, generator=g)
    from .experiments import fewshot_images
    images = fewshot_images("omniglot", "train")
    return lambda g: sample_episodes(images, 32, 5, 1, 1, generator=g, rotate=True)


def train_variant(variant: Variant, *, minutes: float | None = None, progress: bool = True) -> MetaLearner:
    """Train (or resume) one variant's checkpoint with the project's one training loop."""
    learner = variant.new_learner()
    objective = AlgorithmObjective(learner, variant.algorithm, variant.task_batching)
    result = train(learner, objective, task_sampler(variant), variant.train_config(), experiment=variant.name,
                   objective_config=variant.objective_config(), checkpoint_path=variant.checkpoint_path,
                   command=f"python -m helpers.beyond train --only {variant.name}", progress=progress,
                   stop_after_seconds=None if minutes is None else 60 * minutes)
    if result.iteration == variant.n_iterations:
        drop_optimizer_state(variant.checkpoint_path)
    return result.model


def drop_optimizer_state(path: Path) -> None:
    """A finished variant needs no Adam state to be scored: leaving it out makes the shipped file about 3x smaller."""
    checkpoint = load_checkpoint(path)
    if checkpoint.optimizer_state is not None:
        checkpoint.optimizer_state = None
        save_checkpoint(checkpoint, path)


def load_learner(variant: Variant) -> tuple[MetaLearner, int]:
    """The trained learner and the iterations it was trained for."""
    checkpoint = load_checkpoint(variant.checkpoint_path, expected_model_config=variant.new_learner().config())
    return checkpoint.build_model(), checkpoint.iteration


def scores(variant: Variant, learner: nn.Module, *, n_tasks: int = 600, k_shot: int | None = None,
           max_steps: int = 10) -> StepCurve:
    """Test error (sinusoid MSE, K=5 by default) or accuracy (Omniglot, K query images per class) after 0..max_steps."""
    weights, rates = learner.split(dict(learner.named_parameters())) if isinstance(learner, MetaLearner) \
        else (dict(learner.named_parameters()), None)
    model = learner.model if isinstance(learner, MetaLearner) else learner
    inner = variant.algorithm.inner_loop(model, max_steps)
    if variant.benchmark == "sinusoid":
        tasks = sinusoid_test_tasks(k_shot or 5, n_tasks=n_tasks)
        return scores_after_steps(model, weights, tasks, inner, rates=rates)
    from .experiments import fewshot_images
    return evaluate_fewshot(model, weights, fewshot_images("omniglot", "test"), n_way=5, k_shot=1, n_query=1,
                            n_tasks=n_tasks, inner_lr=inner.lr, max_steps=max_steps, adapted=inner.adapted,
                            rates=rates)


def _sinusoid_maml_rows() -> list[tuple[str, str, nn.Module, int, Variant]]:
    """The shipped paper-schedule MAML models, scored beside the variants."""
    rows = []
    maml = Variant("sinusoid_maml", "sinusoid", "MAML (paper)", Algorithm("maml", InnerLoop(0.01, 1)),
                   SINUSOID_ITERATIONS)
    for name, label in (("sinusoid_maml", "MAML (paper, seed 0)"), ("sinusoid_maml_seed1", "MAML (paper, seed 1)")):
        checkpoint = load_checkpoint(ROOT / "data" / "checkpoints" / f"{name}.pt")
        rows.append((name, label, checkpoint.build_model(), checkpoint.iteration, maml))
    return rows


def sinusoid_models() -> dict[str, tuple[nn.Module, Variant, int]]:
    """Every shipped sinusoid model by label: (model or MetaLearner, its variant, iterations trained)."""
    models = {label: (model, variant, iterations) for _, label, model, iterations, variant in _sinusoid_maml_rows()}
    for variant in VARIANTS.values():
        if variant.benchmark == "sinusoid" and variant.checkpoint_path.exists():
            learner, iterations = load_learner(variant)
            models[variant.label] = (learner, variant, iterations)
    return models


def widget_learner(label: str, model: nn.Module, variant: Variant) -> Learner:
    """A model as the adaptation widgets draw it: its weights, α, the parameters that adapt, learned rates."""
    if isinstance(model, MetaLearner):
        weights, rates = model.split({k: v.detach() for k, v in model.named_parameters()})
        model = model.model
    else:
        weights, rates = {k: v.detach() for k, v in model.named_parameters()}, None
    inner = variant.algorithm.inner_loop(model)
    return Learner(label, model, weights, inner.lr, adapted=inner.adapted, rates=rates)


def algorithm_table(n_tasks: int = 600) -> dict[str, Any]:
    """Every shipped variant scored on the same seeded test tasks, with seconds per iteration as trained."""
    rows: list[dict[str, Any]] = []
    candidates = [(name, v.label, None, None, v) for name, v in VARIANTS.items()]
    for name, label, model, iterations, variant in _sinusoid_maml_rows() + candidates:
        if model is None:
            if not variant.checkpoint_path.exists():
                continue
            model, iterations = load_learner(variant)
        row: dict[str, Any] = {"name": name, "label": label, "benchmark": variant.benchmark,
                               "iterations": iterations, "inner_steps_trained": variant.algorithm.inner.steps}
        if variant.benchmark == "sinusoid":
            for k_shot in (5, 10):
                curve = scores(variant, model, n_tasks=n_tasks, k_shot=k_shot)
                for step in (1, 10):
                    mean, ci95 = curve.at(step)
                    row[f"k{k_shot}_step{step}"] = {
                        "mean": _finite(mean), "ci95": _finite(ci95), "median": _finite(float(curve.median[step])),
                        "diverged": int(curve.diverged(SINUSOID_DIVERGED_MSE)[:, step].sum())}
        else:
            curve = scores(variant, model, n_tasks=n_tasks)
            for step in (1, 5, 10):
                mean, ci95 = curve.at(step)
                row[f"accuracy_step{step}"] = {"mean": round(100 * mean, 2), "ci95": round(100 * ci95, 2)}
        row["seconds_per_iteration"] = round(seconds_per_iteration(variant), 4)
        rows.append(row)
        print(f"{label:28s} {variant.benchmark:9s} {json.dumps({k: v for k, v in row.items() if '_step' in k})}")
    return {"test_tasks": n_tasks, "threads": torch.get_num_threads(), "machine": machine_name(), "rows": rows}


def retime_table(table: dict[str, Any], repeats: int = 5) -> dict[str, Any]:
    """`table` with every row's seconds per iteration measured again on this machine, which it then names.

    Scoring takes minutes and timing seconds, so a table scored on a busy machine can be re-timed on a quiet one.
    """
    variants = {name: variant for name, _, _, _, variant in _sinusoid_maml_rows()} | dict(VARIANTS)
    rows = []
    for row in table["rows"]:
        seconds = round(seconds_per_iteration(variants[row["name"]], repeats=repeats), 4)
        print(f"{row['label']:28s} {row['benchmark']:9s} {row['seconds_per_iteration']:.4f} -> {seconds:.4f} s")
        rows.append({**row, "seconds_per_iteration": seconds})
    return {**table, "threads": torch.get_num_threads(), "machine": machine_name(), "rows": rows}


def _finite(value: float, digits: int = 4) -> float | None:
    """Rounded, or None where divergence made it infinite or NaN (JSON has no NaN)."""
    return round(value, digits) if math.isfinite(value) else None


def seconds_per_iteration(variant: Variant, repeats: int = 5, seed: int = 0) -> float:
    """Median seconds of one meta-iteration (gradient and Adam step), measured here, after one warm-up."""
    learner = variant.new_learner()
    objective = AlgorithmObjective(learner, variant.algorithm, variant.task_batching)
    objective.at_iteration(0)
    params = dict(learner.named_parameters())
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    sample = task_sampler(variant)
    generator = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(repeats + 1):
        batch = sample(generator)
        started = time.perf_counter()
        grads, _ = objective.gradient(params, batch)
        for name, p in params.items():
            p.grad = grads[name]
        optimizer.step()
        times.append(time.perf_counter() - started)
    return sorted(times[1:])[repeats // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.beyond", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "table", "cost", "time", "all"])
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="these variants only (train)")
    parser.add_argument("--minutes", type=float, help="train: stop each variant after about this many minutes")
    parser.add_argument("--tasks", type=int, default=600, help="table: test tasks (default 600)")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.command in ("train", "all"):
        for name in args.only or VARIANTS:
            train_variant(VARIANTS[name], minutes=args.minutes)
    if args.command in ("table", "all"):
        table = algorithm_table(args.tasks)
        (RESULTS / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    if args.command == "time":
        table = retime_table(json.loads((RESULTS / "table.json").read_text()))
        (RESULTS / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    if args.command in ("cost", "all"):
        from .cost import steps_cost_table
        (RESULTS / "cost.json").write_text(json.dumps(steps_cost_table(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
