"""Named experiments: the paper's settings in one table, so one command trains any of them."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .batches import TaskBatch
from .checks import check_int_at_least, check_positive
from .maml import InnerLoop, LossFn, Params, TaskBatching, meta_gradient, meta_loss, task_loss
from .episodes import sample_episodes
from .evaluate import VALIDATION_SEED, evaluate_fewshot
from .fast_paths import conv_net_cpu_paths, task_batching_on
from .models import ConvNet, SinusoidMLP
from .miniimagenet import load_miniimagenet
from .omniglot import load_omniglot
from .tasks import SinusoidTasks, oracle_inputs, sample_sinusoid_tasks
from .train import Objective, TrainConfig

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"


@dataclass(frozen=True)
class MAMLSettings:
    """The inner loop and task shape that MAML meta-trains with.

    Its fields (as ``asdict``) are what a checkpoint records and a resume
    compares, so they stay plain numbers; `inner_loop` turns them into the
    ``InnerLoop`` that ``helpers.maml`` takes.
    """

    inner_lr: float
    n_inner_steps: int
    meta_batch_size: int
    k_shot: int
    n_query: int
    first_order: bool = False
    task_batching: TaskBatching = "vmap"

    def __post_init__(self) -> None:
        check_positive("inner_lr", self.inner_lr)
        check_int_at_least("n_inner_steps", self.n_inner_steps, 0)
        check_int_at_least("meta_batch_size", self.meta_batch_size, 1)
        check_int_at_least("k_shot", self.k_shot, 1)
        check_int_at_least("n_query", self.n_query, 1)

    def inner_loop(self, loss_fn: LossFn = F.mse_loss) -> InnerLoop:
        """The inner loop these settings train with; the loss belongs to the task family, not to the settings."""
        return InnerLoop(self.inner_lr, self.n_inner_steps, self.first_order, loss_fn)


class MAMLObjective:
    """(params, tasks) -> mean query loss after adaptation: the MAML meta-objective.

    Its `gradient` is what `train` steps with: the same gradient, but a looped
    meta-batch frees each task's graph as it goes (helpers.maml.meta_gradient).
    """

    def __init__(self, model: nn.Module, settings: MAMLSettings, loss_fn: LossFn = F.mse_loss) -> None:
        self.model, self.settings = model, settings
        self.inner = settings.inner_loop(loss_fn)

    def task_batching(self, tasks: TaskBatch) -> TaskBatching:
        """The settings' choice on the CPU; the fastest path on the tasks' device (helpers.fast_paths)."""
        return task_batching_on(tasks.x_support.device, self.settings.task_batching)

    def __call__(self, params: Params, tasks: TaskBatch) -> torch.Tensor:
        return meta_loss(self.model, params, tasks, self.inner, task_batching=self.task_batching(tasks))

    def gradient(self, params: Params, tasks: TaskBatch) -> tuple[Params, torch.Tensor]:
        return meta_gradient(self.model, params, tasks, self.inner, task_batching=self.task_batching(tasks))


def maml_objective(model: nn.Module, settings: MAMLSettings, loss_fn: LossFn = F.mse_loss) -> Objective:
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
    validation_tasks: int | None = None  # tasks per validation score, recorded beside each score

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
        dataset = self.objective_config.get("data")
        data = f"{DATA_ENV_VARS[dataset]}=/path/to/{dataset} " if dataset in DATA_ENV_VARS else ""
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


@dataclass(frozen=True)
class FewShotCell:
    """One cell of the paper's Table 1: its data set, task shape, MAML settings and the paper's score."""

    dataset: str  # "omniglot" or "miniimagenet"
    n_way: int
    k_shot: int
    inner_lr: float
    n_inner_steps: int  # in meta-training
    meta_batch_size: int
    n_query: int  # query images per class in meta-training
    task_batching: str  # whichever measured faster on a 2-core CPU; both give the same gradients (tests)
    paper: tuple[float, float]  # Table 1: accuracy % and its 95% CI
    test_steps: int  # the steps after which the paper's number is read
    first_order: bool = False
    clip_grad_value: float | None = None  # the reference code clips MiniImagenet's meta-gradient to ±10


# Omniglot (§5.2, appendix A.1): K query images per class in meta-training, as in the reference code. Task
# batching, second order, 1 thread (benchmarks/conv_meta_step.py; the loop takes torch's fused batch-norm kernel,
# vmap cannot): 5-way 1-shot vmap 0.37 vs loop 0.53 s/it; 5-way 5-shot loop 1.38 vs vmap 2.43; 20-way 1-shot loop
# 2.30 vs vmap 2.74 (and 80 MiB vs 1.6 GB); 20-way 5-shot loops to bound memory.
# MiniImagenet (Ravi & Larochelle's split): α = 0.01, 5 steps in training and 10 at test, 15 query images per
# class, meta-batch 4 for both cells as in the reference code's usage lines (the appendix says 2 for 5-shot),
# meta-gradient clipped to ±10; the loop beats vmap (5-way 1-shot first order 1.3 vs 5.9 s/it, 1 thread).
FEWSHOT_CELLS: dict[str, FewShotCell] = {
    "omniglot_5way_1shot": FewShotCell("omniglot", 5, 1, 0.4, 1, 32, 1, "vmap", (98.7, 0.4), 1),
    "omniglot_5way_5shot": FewShotCell("omniglot", 5, 5, 0.4, 1, 32, 5, "loop", (99.9, 0.1), 1),
    "omniglot_20way_1shot": FewShotCell("omniglot", 20, 1, 0.1, 5, 16, 1, "loop", (95.8, 0.3), 5),
    "omniglot_20way_5shot": FewShotCell("omniglot", 20, 5, 0.1, 5, 16, 5, "loop", (98.9, 0.2), 5),
    "miniimagenet_5way_1shot": FewShotCell("miniimagenet", 5, 1, 0.01, 5, 4, 15, "loop", (48.70, 1.84), 10,
                                           clip_grad_value=10.0),
    "miniimagenet_5way_1shot_first_order": FewShotCell("miniimagenet", 5, 1, 0.01, 5, 4, 15, "loop",
                                                       (48.07, 1.75), 10, first_order=True, clip_grad_value=10.0),
    "miniimagenet_5way_5shot": FewShotCell("miniimagenet", 5, 5, 0.01, 5, 4, 15, "loop", (63.11, 0.92), 10,
                                           clip_grad_value=10.0),
    "miniimagenet_5way_5shot_first_order": FewShotCell("miniimagenet", 5, 5, 0.01, 5, 4, 15, "loop",
                                                       (63.15, 0.91), 10, first_order=True, clip_grad_value=10.0),
}
# Validation tasks scored every 500 training iterations (15 query images per class, the training's steps). The
# 600-task test intervals of MiniImagenet (±0.75 points) put 100 tasks at about ±1.8, too wide to see a 2-point
# change; 300 give about ±1.1, at a cost small beside 500 iterations. Earlier legs validated on 100 (docs/*_notes.md).
VALIDATION_TASKS = 300
VALIDATION_QUERY = 15  # query images per class behind each validation score, in every cell
DATA_ENV_VARS = {"omniglot": "OMNIGLOT_DIR", "miniimagenet": "MINIIMAGENET_DIR"}
# Notebook 03's views of the Omniglot rows: (n_way, k_shot, inner_lr, n_inner_steps, meta_batch_size) and Table 1
OMNIGLOT_CELLS = {name: (c.n_way, c.k_shot, c.inner_lr, c.n_inner_steps, c.meta_batch_size)
                  for name, c in FEWSHOT_CELLS.items() if c.dataset == "omniglot"}
OMNIGLOT_TASK_BATCHING = {name: c.task_batching for name, c in FEWSHOT_CELLS.items() if c.dataset == "omniglot"}
PAPER_OMNIGLOT = {name: c.paper for name, c in FEWSHOT_CELLS.items() if c.dataset == "omniglot"}


def fewshot_images(dataset: str, split: str) -> torch.Tensor:
    """A split of a few-shot data set as (classes, examples, [C,] H, W) uint8, read from its data folder."""
    if dataset == "omniglot":
        return load_omniglot().split_images(split)
    if dataset == "miniimagenet":
        return load_miniimagenet(split).images
    raise ValueError(f"unknown data set {dataset!r}; known: {sorted(DATA_ENV_VARS)}")


def fewshot_model(cell: FewShotCell, first_order: bool | None = None) -> ConvNet:
    """The paper's conv net for the cell's data set: 64 filters with stride 2 (Omniglot), 32 with max-pool (Mini).

    With the CPU fast paths measured faster for this cell and order (`first_order`, default the cell's), as
    helpers.fast_paths chooses them; all give the same gradients (tests/test_conv_meta_gradient.py).
    """
    second_order = not (cell.first_order if first_order is None else first_order)
    if cell.dataset == "omniglot":
        model = ConvNet(cell.n_way)
    else:
        model = ConvNet(cell.n_way, in_channels=3, hidden=32, image_size=84, downsample="maxpool")
    switches = conv_net_cpu_paths(cell.dataset, cell.n_way, cell.k_shot, second_order)
    model.channels_last = switches["channels_last"]
    model.double_backward_formulas = switches["double_backward_formulas"]
    return model


def _fewshot(name: str) -> Experiment:
    cell = FEWSHOT_CELLS[name]
    settings = MAMLSettings(inner_lr=cell.inner_lr, n_inner_steps=cell.n_inner_steps,
                            meta_batch_size=cell.meta_batch_size, k_shot=cell.k_shot, n_query=cell.n_query,
                            first_order=cell.first_order, task_batching=cell.task_batching)
    rotate = cell.dataset == "omniglot"  # rotated characters are new classes; rotated photos are not

    def make_sampler() -> Callable[[torch.Generator], Any]:
        images = fewshot_images(cell.dataset, "train")
        return lambda g: sample_episodes(images, cell.meta_batch_size, cell.n_way, cell.k_shot, cell.n_query,
                                         generator=g, rotate=rotate)

    def make_validator() -> Callable[[nn.Module], float]:
        images = fewshot_images(cell.dataset, "val")

        def validate(model: nn.Module) -> float:
            curve = evaluate_fewshot(model, dict(model.named_parameters()), images, n_way=cell.n_way,
                                     k_shot=cell.k_shot, n_query=VALIDATION_QUERY, n_tasks=VALIDATION_TASKS,
                                     inner_lr=cell.inner_lr, max_steps=cell.n_inner_steps, seed=VALIDATION_SEED,
                                     rotate=rotate, scored_steps=(cell.n_inner_steps,),
                                     task_batching=task_batching_on(next(model.parameters()).device,
                                                                    cell.task_batching))
            return float(curve.mean[-1])
        return validate

    title = {"omniglot": "Omniglot", "miniimagenet": "MiniImagenet"}[cell.dataset]
    order = ", first order" if cell.first_order else ""
    return Experiment(
        name=name,
        description=f"MAML on {title}, {cell.n_way}-way {cell.k_shot}-shot (α={cell.inner_lr}, "
                    f"{cell.n_inner_steps} step(s), meta-batch {cell.meta_batch_size}{order}, 60,000 its)",
        make_model=lambda: fewshot_model(cell),
        make_objective=lambda model: maml_objective(model, settings, loss_fn=F.cross_entropy),
        make_sampler=make_sampler,
        objective_config={"objective": "maml", "data": cell.dataset, "n_way": cell.n_way, **asdict(settings)},
        # MiniImagenet iterations take seconds each on a CPU: checkpoint every 100 so a stopped leg loses little
        train_config=TrainConfig(n_iterations=60_000, meta_lr=1e-3, log_every=50,
                                 checkpoint_every=500 if cell.dataset == "omniglot" else 100,
                                 clip_grad_value=cell.clip_grad_value),
        make_validator=make_validator,
        validate_every=500,
        validation_tasks=VALIDATION_TASKS,
    )


EXPERIMENTS: dict[str, Callable[[], Experiment]] = {
    "sinusoid_maml": _sinusoid_maml,
    "sinusoid_pretrained": _sinusoid_pretrained,
    "sinusoid_oracle": _sinusoid_oracle,
    **{name: (lambda name=name: _fewshot(name)) for name in FEWSHOT_CELLS},
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]()
