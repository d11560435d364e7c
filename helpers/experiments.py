"""Named experiments: the paper's settings in one table, so one command trains any of them."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_int_at_least, check_positive
from .maml import Params, meta_gradient, meta_loss, task_loss
from .episodes import sample_episodes
from .evaluate import VALIDATION_SEED, evaluate_fewshot
from .models import ConvNet, SinusoidMLP
from .omniglot import load_omniglot
from .tasks import SinusoidTasks, oracle_inputs, sample_sinusoid_tasks
from .train import Objective, TrainConfig

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


@dataclass(frozen=True)
class MAMLSettings:
    """The inner loop and task shape that MAML meta-trains with."""

    inner_lr: float
    n_inner_steps: int
    meta_batch_size: int
    k_shot: int
    n_query: int
    first_order: bool = False
    task_batching: str = "vmap"

    def __post_init__(self) -> None:
        check_positive("inner_lr", self.inner_lr)
        check_int_at_least("n_inner_steps", self.n_inner_steps, 0)
        check_int_at_least("meta_batch_size", self.meta_batch_size, 1)
        check_int_at_least("k_shot", self.k_shot, 1)
        check_int_at_least("n_query", self.n_query, 1)


class MAMLObjective:
    """(params, tasks) -> mean query loss after adaptation: the MAML meta-objective.

    Its `gradient` is what `train` steps with: the same gradient, but a looped
    meta-batch frees each task's graph as it goes (helpers.maml.meta_gradient).
    """

    def __init__(self, model: nn.Module, settings: MAMLSettings,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.mse_loss) -> None:
        self.model, self.settings, self.loss_fn = model, settings, loss_fn

    def _options(self) -> dict[str, Any]:
        s = self.settings
        return dict(inner_lr=s.inner_lr, n_inner_steps=s.n_inner_steps, first_order=s.first_order,
                    task_batching=s.task_batching, loss_fn=self.loss_fn)

    def __call__(self, params: Params, tasks: SinusoidTasks) -> torch.Tensor:
        return meta_loss(self.model, params, tasks.x_support, tasks.y_support, tasks.x_query, tasks.y_query,
                         **self._options())

    def gradient(self, params: Params, tasks: SinusoidTasks) -> tuple[Params, torch.Tensor]:
        return meta_gradient(self.model, params, tasks.x_support, tasks.y_support, tasks.x_query, tasks.y_query,
                             **self._options())


def maml_objective(model: nn.Module, settings: MAMLSettings,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.mse_loss) -> Objective:
    """The MAML meta-objective for `model` with these settings (see MAMLObjective)."""
    return MAMLObjective(model, settings, loss_fn)


def pretrain_objective(model: nn.Module) -> Objective:
    """(params, tasks) -> MSE on every point of every task, no adaptation: the paper's pretrained baseline."""
    def objective(params: Params, tasks: SinusoidTasks) -> torch.Tensor:
        x = torch.cat([tasks.x_support, tasks.x_query], dim=1)
        y = torch.cat([tasks.y_support, tasks.y_query], dim=1)
        return task_loss(model, params, x, y)
    return objective


def oracle_objective(model: nn.Module) -> Objective:
    """(params, tasks) -> MSE of a model that also sees [A, φ]: the floor the others are judged against."""
    def objective(params: Params, tasks: SinusoidTasks) -> torch.Tensor:
        x = torch.cat([tasks.x_support, tasks.x_query], dim=1)
        y = torch.cat([tasks.y_support, tasks.y_query], dim=1)
        return task_loss(model, params, oracle_inputs(x, tasks.amplitude, tasks.phase), y)
    return objective


@dataclass(frozen=True)
class Experiment:
    """A model, an objective and a task stream: everything `python -m helpers train NAME` needs."""

    name: str
    description: str
    make_model: Callable[[], nn.Module]
    make_objective: Callable[[nn.Module], Objective]
    make_sampler: Callable[[], Callable[[torch.Generator], Any]]
    objective_config: dict[str, Any]
    train_config: TrainConfig
    make_validator: Callable[[], Callable[[nn.Module], float]] | None = None  # validation score, higher is better
    validate_every: int = 0

    def new_model(self, seed: int) -> nn.Module:
        """A freshly initialised model; the seed fixes its weights without touching the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.make_model()

    @property
    def checkpoint_path(self) -> Path:
        return CHECKPOINT_DIR / f"{self.name}.pt"

    @property
    def resume_command(self) -> str:
        """The command that continues this experiment's shipped checkpoint to the paper's iteration count."""
        data = "OMNIGLOT_DIR=../shared/data/omniglot " if self.name.startswith("omniglot") else ""
        return f"{data}python -m helpers train {self.name}"


SINUSOID_SETTINGS = MAMLSettings(inner_lr=0.01, n_inner_steps=1, meta_batch_size=25, k_shot=10, n_query=10)


def _sinusoid_sampler(settings: MAMLSettings = SINUSOID_SETTINGS) -> Callable[[torch.Generator], SinusoidTasks]:
    return lambda g: sample_sinusoid_tasks(settings.meta_batch_size, settings.k_shot, settings.n_query, generator=g)


def _sinusoid_maml() -> Experiment:
    settings = SINUSOID_SETTINGS
    return Experiment(
        name="sinusoid_maml",
        description="MAML on sinusoids, the paper's schedule (K=10, α=0.01, 1 step, meta-batch 25, 70,000 its)",
        make_model=SinusoidMLP,
        make_objective=lambda model: maml_objective(model, settings),
        make_sampler=_sinusoid_sampler,
        objective_config={"objective": "maml", **asdict(settings)},
        train_config=TrainConfig(n_iterations=70_000, meta_lr=1e-3, compile=True),
    )


def _sinusoid_pretrained() -> Experiment:
    return Experiment(
        name="sinusoid_pretrained",
        description="pretrained baseline: plain regression on all tasks' points, same tasks and iterations as MAML",
        make_model=SinusoidMLP,
        make_objective=pretrain_objective,
        make_sampler=_sinusoid_sampler,
        objective_config={"objective": "pretrain", "meta_batch_size": 25, "points_per_task": 20},
        train_config=TrainConfig(n_iterations=70_000, meta_lr=1e-3, compile=True),
    )


def _sinusoid_oracle() -> Experiment:
    return Experiment(
        name="sinusoid_oracle",
        description="oracle: the MLP also receives amplitude and phase ([x, A, φ] in), same tasks and iterations",
        make_model=lambda: SinusoidMLP(in_features=3),
        make_objective=oracle_objective,
        make_sampler=_sinusoid_sampler,
        objective_config={"objective": "oracle", "meta_batch_size": 25, "points_per_task": 20},
        train_config=TrainConfig(n_iterations=70_000, meta_lr=1e-3, compile=True),
    )


# name: (n_way, k_shot, inner_lr, n_inner_steps, meta_batch_size), the paper's section 5.2 and appendix A.1
OMNIGLOT_CELLS = {
    "omniglot_5way_1shot": (5, 1, 0.4, 1, 32),
    "omniglot_5way_5shot": (5, 5, 0.4, 1, 32),
    "omniglot_20way_1shot": (20, 1, 0.1, 5, 16),
    "omniglot_20way_5shot": (20, 5, 0.1, 5, 16),
}
# How meta_loss batches tasks, per cell: whichever measured faster on a 2-core CPU, second order
# (5-way 1-shot: vmap 0.32 vs loop 0.69 s/it; 5-way 5-shot: loop 1.5 vs vmap 2.2; 20-way 1-shot: vmap 1.7 vs loop
# 2.6). 20-way 5-shot loops to bound memory. Both give the same gradients (tests/test_conv_meta_gradient.py).
OMNIGLOT_TASK_BATCHING = {"omniglot_5way_1shot": "vmap", "omniglot_5way_5shot": "loop",
                          "omniglot_20way_1shot": "vmap", "omniglot_20way_5shot": "loop"}
PAPER_OMNIGLOT = {  # Finn et al. 2017, Table 1: accuracy % and its 95% CI
    "omniglot_5way_1shot": (98.7, 0.4), "omniglot_5way_5shot": (99.9, 0.1),
    "omniglot_20way_1shot": (95.8, 0.3), "omniglot_20way_5shot": (98.9, 0.2),
}


def _omniglot(name: str) -> Experiment:
    n_way, k_shot, inner_lr, n_inner_steps, meta_batch_size = OMNIGLOT_CELLS[name]
    # K query images per class while meta-training, as in the reference code; 15 per class at test time
    settings = MAMLSettings(inner_lr=inner_lr, n_inner_steps=n_inner_steps, meta_batch_size=meta_batch_size,
                            k_shot=k_shot, n_query=k_shot, task_batching=OMNIGLOT_TASK_BATCHING[name])

    def make_sampler() -> Callable[[torch.Generator], Any]:
        images = load_omniglot().split_images("train")
        return lambda g: sample_episodes(images, meta_batch_size, n_way, k_shot, k_shot, generator=g)

    def make_validator() -> Callable[[nn.Module], float]:
        images = load_omniglot().split_images("val")

        def validate(model: nn.Module) -> float:
            curve = evaluate_fewshot(model, dict(model.named_parameters()), images, n_way=n_way, k_shot=k_shot,
                                     n_tasks=100, inner_lr=inner_lr, max_steps=n_inner_steps, seed=VALIDATION_SEED)
            return float(curve.mean[-1])
        return validate

    return Experiment(
        name=name,
        description=f"MAML on Omniglot, {n_way}-way {k_shot}-shot (α={inner_lr}, {n_inner_steps} step(s), "
                    f"meta-batch {meta_batch_size}, 60,000 its)",
        make_model=lambda: ConvNet(n_way),
        make_objective=lambda model: maml_objective(model, settings, loss_fn=F.cross_entropy),
        make_sampler=make_sampler,
        objective_config={"objective": "maml", "data": "omniglot", "n_way": n_way, **asdict(settings)},
        train_config=TrainConfig(n_iterations=60_000, meta_lr=1e-3, log_every=50, checkpoint_every=500),
        make_validator=make_validator,
        validate_every=500,
    )


EXPERIMENTS: dict[str, Callable[[], Experiment]] = {
    "sinusoid_maml": _sinusoid_maml,
    "sinusoid_pretrained": _sinusoid_pretrained,
    "sinusoid_oracle": _sinusoid_oracle,
    **{name: (lambda name=name: _omniglot(name)) for name in OMNIGLOT_CELLS},
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]()
