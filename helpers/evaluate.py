"""Few-shot evaluation as in the paper: error after 0..N gradient steps on held-out tasks, with 95% CIs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .batches import TaskBatch
from .checks import check_int_at_least
from .maml import InnerLoop, Params, TaskBatching, adaptation_steps
from .tasks import X_RANGE, SinusoidTasks, oracle_inputs, sample_sinusoid_tasks

EVAL_SEED = 20_170_703  # test tasks come from their own seed, never the training stream
VALIDATION_SEED = 1_703_034  # validation tasks (e.g. to tune a step size) are neither training nor test tasks
# Predicting y = 0 scores A²/2 <= 12.5 on every sinusoid task: an error above that is worse than knowing nothing.
SINUSOID_DIVERGED_MSE = 5.0**2 / 2
PAPER_TABLE2_MAML_K5 = {1: 0.67, 5: 0.38, 10: 0.35}  # Finn et al. 2017, Table 2 (K=5 sinusoid MSE)
PAPER_TABLE2_PRETRAINED_K5 = {1: 2.41, 5: 2.23, 10: 2.19}


@dataclass(frozen=True)
class StepCurve:
    """Per-task errors after 0..steps inner steps (or after the steps named in `scored_steps`), and their summaries."""

    per_task: Tensor  # (tasks, steps + 1), or (tasks, len(scored_steps))
    scored_steps: tuple[int, ...] | None = None  # None: every step 0..steps

    @property
    def steps(self) -> list[int]:
        return list(self.scored_steps) if self.scored_steps is not None else list(range(self.per_task.shape[1]))

    def at(self, step: int) -> tuple[float, float]:
        """(mean, 95% CI half-width) after `step` steps."""
        column = self.steps.index(step)
        return float(self.mean[column]), float(self.ci95[column])

    @property
    def mean(self) -> Tensor:
        return self.per_task.mean(0)

    @property
    def ci95(self) -> Tensor:
        """Half-width of the 95% confidence interval of the mean: 1.96·σ/√n."""
        return 1.96 * self.per_task.std(0) / math.sqrt(self.per_task.shape[0])

    @property
    def median(self) -> Tensor:
        """A task whose error became NaN counts as infinitely bad, not as missing (torch's median would give NaN)."""
        return self.per_task.nan_to_num(nan=math.inf).median(0).values

    def median_ci95(self) -> tuple[Tensor, Tensor]:
        """Distribution-free 95% CI of the median, from order statistics (no normality assumed)."""
        n = self.per_task.shape[0]
        half = 1.96 * math.sqrt(n) / 2
        low, high = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half))
        ordered = self.per_task.sort(0).values
        return ordered[low], ordered[high]

    def diverged(self, threshold: float) -> Tensor:
        """(tasks, steps + 1) bool: error above `threshold` (NaN counts as above)."""
        return ~(self.per_task <= threshold)

    def row(self, step: int) -> str:
        lo, hi = self.median_ci95()
        return (f"mean {self.mean[step]:.3f} ± {self.ci95[step]:.3f}, "
                f"median {self.median[step]:.3f} [{lo[step]:.3f}, {hi[step]:.3f}]")


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of correct predictions."""
    return (logits.argmax(-1) == labels).float().mean()


def scores_after_steps(model: nn.Module, params: Params, tasks: TaskBatch, inner: InnerLoop, *,
                       metric: Callable[[Tensor, Tensor], Tensor] | None = None,
                       task_batching: TaskBatching = "vmap", scored_steps: Sequence[int] | None = None,
                       rates: Params | None = None) -> StepCurve:
    """`metric` on every task's query set after 0..inner.steps steps on its own (fixed) support set.

    As in the paper, each step reuses the same K support points. `metric`
    defaults to `inner.loss_fn` (an error); pass `accuracy` for classifiers.
    Tasks run together under vmap, or one by one (`task_batching="loop"`,
    faster for conv nets on a CPU); nothing here builds a graph for an outer
    gradient. `scored_steps` scores the query set after those steps only: the
    query forward pass is most of the cost for large images (MiniImagenet).
    `rates`: learned step sizes, as in ``helpers.maml.step_rate``.
    """
    metric = metric or inner.loss_fn
    params = {name: p.detach() for name, p in params.items()}
    rates = None if rates is None else {name: r.detach() for name, r in rates.items()}
    if scored_steps is not None:
        scored_steps = tuple(sorted(set(scored_steps)))
        if not scored_steps or scored_steps[0] < 0 or scored_steps[-1] > inner.steps:
            raise ValueError(f"scored_steps must be steps within 0..{inner.steps}, got {scored_steps}")
    scored = set(range(inner.steps + 1) if scored_steps is None else scored_steps)

    def one_task(xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        return torch.stack([metric(functional_call(model, p, (xq,)), yq) for step, p in enumerate(
            adaptation_steps(model, params, xs, ys, inner, rates)) if step in scored])

    with torch.no_grad():
        if task_batching == "vmap":
            return StepCurve(vmap(one_task)(*tasks.tensors), scored_steps)
        if task_batching == "loop":
            return StepCurve(torch.stack([one_task(*task) for task in tasks.tasks()]), scored_steps)
    raise ValueError(f"task_batching must be 'vmap' or 'loop', got {task_batching!r}")


def predictions_after_steps(model: nn.Module, params: Params, x_support: Tensor, y_support: Tensor,
                            x_grid: Tensor, inner: InnerLoop, rates: Params | None = None) -> Tensor:
    """One task's predictions on `x_grid` after 0..inner.steps steps, shape (inner.steps + 1, len(x_grid))."""
    params = {name: p.detach() for name, p in params.items()}
    rates = None if rates is None else {name: r.detach() for name, r in rates.items()}
    with torch.no_grad():
        return torch.stack([functional_call(model, p, (x_grid,))[..., 0]
                            for p in adaptation_steps(model, params, x_support, y_support, inner, rates)])


def sinusoid_test_tasks(k_shot: int, *, n_tasks: int = 600, n_query: int = 100, seed: int = EVAL_SEED,
                        support_x_range: tuple[float, float] = X_RANGE,
                        query_x_range: tuple[float, float] = X_RANGE) -> SinusoidTasks:
    """The fixed held-out tasks for one K: every model is scored on exactly these."""
    check_int_at_least("n_tasks", n_tasks, 1)
    check_int_at_least("k_shot", k_shot, 1)
    return sample_sinusoid_tasks(n_tasks, k_shot, n_query, generator=torch.Generator().manual_seed(seed + k_shot),
                                 support_x_range=support_x_range, query_x_range=query_x_range)


def evaluate_sinusoid(
    model: nn.Module,
    params: Params,
    *,
    k_shots: Sequence[int] = (5, 10, 20),
    n_tasks: int = 600,
    n_query: int = 100,
    max_steps: int = 10,
    inner_lr: float = 0.01,
    seed: int = EVAL_SEED,
    support_x_range: tuple[float, float] = X_RANGE,
    query_x_range: tuple[float, float] = X_RANGE,
) -> dict[int, StepCurve]:
    """MSE vs gradient steps for each K on `n_tasks` seeded test tasks (the paper's Figure 3 and Table 2).

    The query set is `n_query` points spread over `query_x_range`, so the number
    measures the whole curve, not just K more points. Every task adapts with the
    same inner loop: `max_steps` steps of size `inner_lr` on the MSE.
    """
    device = next(iter(params.values())).device
    inner = InnerLoop(inner_lr, max_steps)
    curves = {}
    for k_shot in k_shots:
        tasks = sinusoid_test_tasks(k_shot, n_tasks=n_tasks, n_query=n_query, seed=seed,
                                    support_x_range=support_x_range, query_x_range=query_x_range).to(device)
        curves[k_shot] = scores_after_steps(model, params, tasks, inner)
    return curves


def evaluate_sinusoid_oracle(model: nn.Module, params: Params, *, k_shots: Sequence[int] = (5, 10, 20),
                             n_tasks: int = 600, n_query: int = 100, seed: int = EVAL_SEED) -> dict[int, StepCurve]:
    """The oracle's MSE on the same test tasks; it is told A and φ, so it needs no steps (one column)."""
    curves = {}
    with torch.no_grad():
        for k_shot in k_shots:
            tasks = sinusoid_test_tasks(k_shot, n_tasks=n_tasks, n_query=n_query, seed=seed)
            pred = functional_call(model, params, (oracle_inputs(tasks.x_query, tasks.amplitude, tasks.phase),))
            curves[k_shot] = StepCurve(((pred - tasks.y_query) ** 2).mean(dim=(1, 2))[:, None])
    return curves


def tune_inner_lr(model: nn.Module, params: Params, candidates: Sequence[float], *,
                  k_shots: Sequence[int] = (5, 10, 20), n_tasks: int = 600, max_steps: int = 10,
                  seed: int = VALIDATION_SEED) -> tuple[float, dict[float, float]]:
    """The step size with the lowest validation MSE, averaged over K and over steps 1..max_steps.

    This is the paper's "automatically tuned step size" for the pretrained
    baseline. It scores validation tasks (their own seed), never the test tasks.
    """
    scores = {}
    for inner_lr in candidates:
        curves = evaluate_sinusoid(model, params, k_shots=k_shots, n_tasks=n_tasks, max_steps=max_steps,
                                   inner_lr=inner_lr, seed=seed)
        score = torch.stack([c.mean[1:] for c in curves.values()]).mean()
        scores[inner_lr] = float(score) if torch.isfinite(score) else float("inf")
    return min(scores, key=scores.get), scores


def evaluate_fewshot(model: nn.Module, params: Params, images: Tensor, *, n_way: int, k_shot: int,
                     n_query: int = 15, n_tasks: int = 600, inner_lr: float, max_steps: int = 10,
                     seed: int = EVAL_SEED, chunk: int = 50, rotate: bool = True,
                     task_batching: TaskBatching = "vmap", scored_steps: Sequence[int] | None = None,
                     adapted: frozenset[str] | None = None, rates: Params | None = None,
                     on_chunk: Callable[[int], None] | None = None) -> StepCurve:
    """Accuracy after 0..max_steps steps on `n_tasks` seeded N-way K-shot episodes drawn from `images`.

    Each task is rotated at random and adapts on the same support images at
    every step (steps of size `inner_lr` on the cross-entropy). `n_query`
    images per class are classified together, so batch norm normalises them
    with their own batch's statistics: the paper's reference code uses
    n_query = k_shot (one image per class in 1-shot), which tells the network
    that the batch holds each class equally often (transduction); 15 per class
    is the usual non-paper choice. Tasks are drawn in chunks of `chunk` (the
    same seed and chunk give the same tasks) and run under vmap or one by one
    (`task_batching`; the loop bounds memory for large images). `rotate=False`
    for photographs (MiniImagenet). `scored_steps`: see `scores_after_steps`.
    `adapted` and `rates` adapt as ANIL, Meta-SGD and MAML++ do (helpers.maml.InnerLoop, step_rate).
    `on_chunk(n)` hears of each chunk of n tasks scored (a progress bar: 600 MiniImagenet tasks take minutes).
    """
    from .episodes import sample_episodes

    device = next(iter(params.values())).device
    inner = InnerLoop(inner_lr, max_steps, loss_fn=F.cross_entropy, adapted=adapted)
    generator = torch.Generator().manual_seed(seed)
    curves = []
    for start in range(0, n_tasks, chunk):
        tasks = sample_episodes(images, min(chunk, n_tasks - start), n_way, k_shot, n_query,
                                generator=generator, rotate=rotate).to(device)
        curves.append(scores_after_steps(model, params, tasks, inner, metric=accuracy, task_batching=task_batching,
                                         scored_steps=scored_steps, rates=rates))
        if on_chunk is not None:
            on_chunk(len(curves[-1].per_task))
    return StepCurve(torch.cat([curve.per_task for curve in curves]), curves[0].scored_steps)
