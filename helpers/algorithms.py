"""Beyond the paper: MAML's successors, each a few lines on the one inner loop of helpers.maml.

- first-order MAML: the inner gradients are constants (``InnerLoop.first_order``);
- Reptile (Nichol, Achiam & Schulman 2018): no query loss and no outer backward
  pass: the update direction is θ − φ, φ being θ after a few plain SGD steps on
  all of a task's examples;
- ANIL (Raghu et al. 2020): only the head (last linear layer) adapts in the
  inner loop (``InnerLoop.adapted``);
- Meta-SGD (Li et al. 2017): one learned inner learning rate per weight;
- MAML++ (Antoniou et al. 2019): learned per-layer, per-step rates (LSLR), a
  multi-step loss annealed towards the last step (MSL) and a cosine-annealed
  meta learning rate.

Every algorithm trains a ``models.MetaLearner`` (the model plus any learned
rates) with the same training loop and is scored by the same evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import vmap

from .batches import TaskBatch
from .maml import InnerLoop, Params, TaskBatching, adapt, meta_gradient, meta_loss, task_loss
from .models import MetaLearner

LearnedRates = Literal["none", "per_weight", "per_layer_step"]


@dataclass(frozen=True)
class Algorithm:
    """What distinguishes one meta-learning algorithm from MAML, on top of its training `inner` loop."""

    name: str
    inner: InnerLoop
    learned_rates: LearnedRates = "none"  # Meta-SGD: "per_weight"; MAML++: "per_layer_step"
    head_only: bool = False  # ANIL
    multi_step_loss_iterations: int = 0  # MAML++: the multi-step loss anneals to the last step over these
    reptile: bool = False
    cosine_meta_lr: bool = False  # MAML++ (read by the training configuration, not here)

    def __post_init__(self) -> None:
        if self.learned_rates not in ("none", "per_weight", "per_layer_step"):
            raise ValueError(f"learned_rates must be 'none', 'per_weight' or 'per_layer_step', "
                             f"got {self.learned_rates!r}")
        if self.reptile and (self.learned_rates != "none" or self.head_only or self.multi_step_loss_iterations):
            raise ValueError("Reptile takes no learned rates, head-only adaptation or multi-step loss here")
        if self.multi_step_loss_iterations < 0:
            raise ValueError(f"multi_step_loss_iterations must be >= 0, got {self.multi_step_loss_iterations}")

    def new_learner(self, model: nn.Module) -> MetaLearner:
        """`model` wrapped with the rates this algorithm learns, all starting at `inner.lr`."""
        weights = dict(model.named_parameters())
        adapted = head_names(model) if self.head_only else weights.keys()
        if self.learned_rates == "per_weight":
            shapes = {name: [1, *weights[name].shape] for name in adapted}
        elif self.learned_rates == "per_layer_step":
            shapes = {name: [self.inner.steps] for name in adapted}
        else:
            shapes = {}
        return MetaLearner(model, shapes, self.inner.lr)

    def inner_loop(self, model: nn.Module, steps: int | None = None) -> InnerLoop:
        """The inner loop for `model` (ANIL: its head only), run for `steps` (default: as in training)."""
        inner = replace(self.inner, adapted=head_names(model)) if self.head_only else self.inner
        return inner if steps is None else inner.with_steps(steps)


def head_names(model: nn.Module) -> frozenset[str]:
    """The parameters of the model's last linear layer: what ANIL adapts."""
    last = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not last:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to serve as ANIL's head")
    return frozenset(f"{last[-1]}.{name}" for name, _ in model.get_submodule(last[-1]).named_parameters())


def multi_step_weights(steps: int, progress: float) -> Tensor:
    """MAML++'s per-step loss weights at `progress` ∈ [0, 1] of the annealing (their code's schedule).

    Equal weights 1/steps at the start; every step but the last decays
    linearly to 0.03/steps, and the last takes what the others give up.
    """
    progress = min(max(progress, 0.0), 1.0)
    floor = 0.03 / steps
    weights = torch.full((steps,), max(1.0 / steps - progress / steps, floor), dtype=torch.float64)
    weights[-1] = min(1.0 / steps + progress * (steps - 1) / steps, 1.0 - (steps - 1) * floor)
    return weights


def reptile_direction(model: nn.Module, params: Params, tasks: TaskBatch, inner: InnerLoop,
                      task_batching: TaskBatching = "vmap") -> tuple[Params, Tensor]:
    """Reptile's update direction mean over tasks of θ − φ, and the mean loss of φ on the task's examples.

    φ is θ after `inner.steps` SGD steps on all of the task's examples (support
    and query together: Reptile has no held-out set). Fed to Adam as if it were
    a gradient, as Nichol et al. do in their Adam variant.
    """
    params = {name: p.detach() for name, p in params.items()}
    inner = replace(inner, first_order=True)  # no graph: nothing is differentiated through φ

    def one_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> tuple[Params, Tensor]:
        x, y = torch.cat([xs, xq]), torch.cat([ys, yq])
        phi = adapt(model, params, x, y, inner)
        return {name: params[name] - phi[name] for name in params}, task_loss(model, phi, x, y,
                                                                               loss_fn=inner.loss_fn)

    with torch.no_grad():
        if task_batching == "vmap":
            moves, losses = vmap(one_task)(*tasks.tensors)
            return {name: move.mean(0) for name, move in moves.items()}, losses.mean()
        results = [one_task(*task) for task in tasks.tasks()]
    moves = {name: torch.stack([move[name] for move, _ in results]).mean(0) for name in params}
    return moves, torch.stack([loss for _, loss in results]).mean()


class AlgorithmObjective:
    """(learner parameters, tasks) -> meta-loss, with the `gradient` and `at_iteration` that `train` uses.

    Parameters are a MetaLearner's (``model.*`` and ``rates.*``); gradients come
    back under the same names, for Adam to step on all of them together.
    """

    def __init__(self, learner: MetaLearner, algorithm: Algorithm, task_batching: TaskBatching = "vmap") -> None:
        self.learner, self.algorithm, self.task_batching = learner, algorithm, task_batching
        self.inner = algorithm.inner_loop(learner.model)
        self.step_weights: Tensor | None = None

    def at_iteration(self, iteration: int) -> None:
        """MAML++: weigh every step's query loss while annealing, only the last one after."""
        n = self.algorithm.multi_step_loss_iterations
        if n and iteration < n and self.inner.steps > 1:
            self.step_weights = multi_step_weights(self.inner.steps, iteration / n)
        else:
            self.step_weights = None

    def _weights(self, like: Tensor) -> Tensor | None:
        return None if self.step_weights is None else self.step_weights.to(like)

    def __call__(self, params: Params, tasks: TaskBatch) -> Tensor:
        if self.algorithm.reptile:
            raise TypeError("Reptile has no meta-loss to differentiate: use .gradient")
        weights, rates = self.learner.split(params)
        return meta_loss(self.learner.model, weights, tasks, self.inner, rates=rates,
                         step_weights=self._weights(tasks.x_query), task_batching=self.task_batching)

    def gradient(self, params: Params, tasks: TaskBatch) -> tuple[Params, Tensor]:
        weights, rates = self.learner.split(params)
        if self.algorithm.reptile:
            moves, loss = reptile_direction(self.learner.model, weights, tasks, self.inner, self.task_batching)
            return {f"model.{name}": move for name, move in moves.items()}, loss
        return meta_gradient(self.learner.model, weights, tasks, self.inner, rates=rates,
                             step_weights=self._weights(tasks.x_query), task_batching=self.task_batching,
                             wrt=params)
