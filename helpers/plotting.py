"""Figures shared by the notebooks; each function draws on axes it is given or makes its own."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes

from .evaluate import StepCurve, predictions_after_steps
from .maml import InnerLoop
from .tasks import X_RANGE, sinusoid


def plot_task_distribution(amplitude: torch.Tensor, phase: torch.Tensor, *, ax: Axes | None = None,
                           n_points: int = 200) -> Axes:
    """Many sampled sines on one axes: what 'a distribution over tasks' looks like."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    x = torch.linspace(*X_RANGE, n_points)
    for a, p in zip(amplitude, phase):
        ax.plot(x, sinusoid(x, a, p), lw=1, alpha=0.6)
    ax.set(xlabel="x", ylabel="y = A·sin(x − φ)", title=f"{len(amplitude)} tasks from p(T)")
    return ax


def plot_loss_history(loss_history: Sequence[float], log_every: int, *, ax: Axes | None = None,
                      label: str = "meta-training loss") -> Axes:
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    iterations = [log_every * (i + 1) for i in range(len(loss_history))]
    ax.plot(iterations, loss_history, label=label)
    ax.set(xlabel="meta-iteration", ylabel=f"query MSE (mean over {log_every} iterations)", yscale="log",
           title="Meta-training loss")
    ax.legend()
    return ax


def plot_validation(points: Sequence[tuple[int, float, int | None]], *, ax: Axes | None = None,
                    label: str = "validation", scale: float = 1.0, x_scale: float = 1.0,
                    filled: int | None = None, **style) -> Axes:
    """A validation curve, its points marked by how many tasks each averages: filled on `filled` tasks (default:
    the curve's largest count), hollow on any other.

    A score on 100 tasks is noisier than one on 300 and may sit a point or two away from it, so a change of count
    must not read as a change of the model. `points` are `Checkpoint.validation_points()`; scores are drawn times
    `scale` (100 for %), iterations divided by `x_scale` (1000 for thousands); `style` goes to the line. Give
    several curves on one axes the same `filled`, so that a marker means one count throughout.
    """
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    line, = ax.plot([it / x_scale for it, _, _ in points], [scale * s for _, s, _ in points], "-", **style)
    recorded = sorted({c for _, _, c in points if c is not None})
    filled = filled if filled is not None else (recorded or [None])[-1]
    for count in recorded + [None]:
        here = [(it / x_scale, scale * s) for it, s, c in points if c == count]
        if here:
            ax.plot(*zip(*here), "o", ms=3.5, color=line.get_color(),
                    markerfacecolor=line.get_color() if count == filled and count is not None else "white",
                    label=f"{label}, {count} tasks" if count is not None else f"{label}, tasks not recorded")
    return ax


def plot_test_scores(points: Sequence[tuple[int, float, float]], *, ax: Axes | None = None,
                     label: str = "test accuracy", x_scale: float = 1.0, offset: float = 0.0, **style) -> Axes:
    """A checkpoint's stored test scores (`Checkpoint.test_curve`) as points with their 95% intervals: each on far
    more tasks than a validation check, taken only where a training leg stopped. Iterations are moved by `offset`
    (to set several cells side by side) and divided by `x_scale`; `style` goes to `errorbar`."""
    ax = ax or plt.subplots(figsize=(7, 3.5))[1]
    if points:
        iterations, means, intervals = zip(*points)
        ax.errorbar([(it + offset) / x_scale for it in iterations], means, yerr=intervals,
                    **{"fmt": "s", "ms": 3.5, "capsize": 2, "label": label, **style})
    return ax


def plot_error_vs_steps(curves: Mapping[str, StepCurve], *, ax: Axes | None = None, ylabel: str = "test MSE",
                        title: str = "", reference: Mapping[int, float] | None = None,
                        reference_label: str = "paper") -> Axes:
    """Mean error vs inner steps with shaded 95% CIs, one line per curve (the paper's Figure 3 style)."""
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for label, curve in curves.items():
        mean, ci = curve.mean.numpy(), curve.ci95.numpy()
        line, = ax.plot(curve.steps, mean, marker="o", ms=3, label=label)
        ax.fill_between(curve.steps, mean - ci, mean + ci, color=line.get_color(), alpha=0.2)
    if reference:
        ax.plot(list(reference), list(reference.values()), "k*", ms=10, label=reference_label)
    ax.set(xlabel="number of gradient steps at test time", ylabel=ylabel, title=title)
    ax.legend()
    return ax


def plot_step_size_sweep(scores: Mapping[float, float], *, chosen: float | None = None, ax: Axes | None = None,
                         ylabel: str = "validation MSE", title: str = "") -> Axes:
    """Score vs step size (log axis), every candidate shown: a diverged one (score inf or nan) is drawn as a red ×
    on a ceiling above the finite scores, so the sweep's shape, and where the chosen step size sits in it, stay visible."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    lrs = sorted(scores)
    finite = [lr for lr in lrs if math.isfinite(scores[lr])]
    diverged = [lr for lr in lrs if lr not in finite]
    ceiling = 1.2 * max(scores[lr] for lr in finite) if finite else 1.0
    ax.plot(lrs, [scores[lr] if lr in finite else ceiling for lr in lrs], color="0.6", ls=":", lw=1)
    ax.plot(finite, [scores[lr] for lr in finite], "o-", color="tab:blue", label="validation MSE")
    if diverged:
        ax.plot(diverged, [ceiling] * len(diverged), "x", color="tab:red", ms=9, mew=2, label="diverged")
    if chosen is not None:
        ax.axvline(chosen, color="k", ls=":", label=f"chosen α = {chosen}")
    ax.set(xscale="log", xlabel="step size α", ylabel=ylabel, title=title, ylim=(None, 1.1 * ceiling))
    ax.legend()
    return ax


class LiveLossPlot:
    """A loss curve that redraws in place during training: pass it as `train(..., on_log=...)`."""

    def __init__(self, log_every: int, *, title: str = "Meta-training loss (live)",
                 loss_name: str = "query MSE") -> None:
        from IPython.display import display

        self.log_every = log_every
        self.figure, self.ax = plt.subplots(figsize=(7, 3.5))
        self.line, = self.ax.plot([], [])
        self.ax.set(xlabel="meta-iteration", ylabel=f"{loss_name} (mean over {log_every} its)", yscale="log",
                    title=title)
        plt.close(self.figure)  # shown through the handle only, not again at the cell's end
        self.handle = display(self.figure, display_id=True)

    def __call__(self, iteration: int, loss_history: Sequence[float]) -> None:
        if len(loss_history) % 10:
            return  # redraw every 10th log: a redraw costs more than the iterations it reports
        self.line.set_data([self.log_every * (i + 1) for i in range(len(loss_history))], loss_history)
        self.ax.relim()
        self.ax.autoscale_view()
        self.handle.update(self.figure)


def plot_adaptation(model, params, x_support: torch.Tensor, y_support: torch.Tensor, amplitude: float,
                    phase: float, *, inner_lr: float, steps: Sequence[int] = (0, 1, 10), ax: Axes | None = None,
                    title: str = "") -> Axes:
    """One task: the true sine, the K points, and the model after each of `steps` (the paper's Figure 2)."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    x_grid = torch.linspace(*X_RANGE, 200)[:, None]
    trajectory = predictions_after_steps(model, params, x_support, y_support, x_grid, InnerLoop(inner_lr, max(steps)))
    ax.plot(x_grid[:, 0], sinusoid(x_grid[:, 0], amplitude, phase), color="tab:red", lw=2, label="ground truth")
    ax.plot(x_support[:, 0], y_support[:, 0], "^", color="tab:purple", ms=8, label=f"{len(x_support)} points used")
    styles = {0: dict(ls=":", color="tab:green")}
    for step in steps:
        label = "pre-update" if step == 0 else f"{step} grad step{'s' if step > 1 else ''}"
        ax.plot(x_grid[:, 0], trajectory[step], label=label, **styles.get(step, dict(ls="--" if step == 1 else "-")))
    ax.set(xlim=X_RANGE, ylim=(-6, 6), xlabel="x", ylabel="y", title=title)
    ax.legend(fontsize=7, loc="lower left")
    return ax
