"""Live adaptation widgets: move K or the number of steps and watch the fit change.

The figure is built once and rendered to an `ipywidgets.Image`; a slider move
only swaps line data (adaptation trajectories are cached per K), so a move
costs a few milliseconds of compute and one PNG render. This works the same in
JupyterLab, Voilà and nbval, with no frontend extension.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import ipywidgets as widgets
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn
from torch.func import functional_call

from .maml import Params, adaptation_steps
from .tasks import X_RANGE, sample_sinusoid_tasks, sinusoid

MAX_K, MAX_STEPS = 40, 10


@dataclass
class Learner:
    """A model and the step size it adapts with, drawn as one family of lines."""

    name: str
    model: nn.Module
    params: Params
    inner_lr: float
    color: str = "tab:blue"


class SinusoidAdaptationWidget:
    """True sine, K support points, and each learner before and after adaptation."""

    def __init__(self, learners: list[Learner], *, k_shot: int = 10, n_steps: int = 1, seed: int = 0,
                 support_x_range: tuple[float, float] = X_RANGE, figsize: tuple[float, float] = (7.5, 4.0),
                 dpi: int = 80) -> None:
        self.learners = learners
        self.generator = torch.Generator().manual_seed(seed)
        self.support_x_range = support_x_range
        self.x_grid = torch.linspace(*X_RANGE, 200)[:, None]
        self.dpi = dpi
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

        self.figure = Figure(figsize=figsize)
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.subplots()
        grid = self.x_grid[:, 0].numpy()
        self.true_line, = self.ax.plot(grid, grid * 0, color="k", lw=2, label="true function")
        self.support_dots, = self.ax.plot([], [], "^", color="tab:purple", ms=8, label="K support points")
        self.before_lines, self.after_lines = [], []
        for learner in learners:
            self.before_lines.append(self.ax.plot(grid, grid * 0, ls=":", color=learner.color,
                                                  label=f"{learner.name}, before adaptation")[0])
            self.after_lines.append(self.ax.plot(grid, grid * 0, color=learner.color, lw=2,
                                                 label=f"{learner.name}, after steps")[0])
        self.ax.set(xlim=X_RANGE, ylim=(-6, 6), xlabel="x", ylabel="y")
        self.ax.legend(loc="upper right", fontsize=8)
        self.figure.tight_layout()

        self.k_slider = widgets.IntSlider(value=k_shot, min=1, max=MAX_K, description="K (shots)",
                                          continuous_update=False)
        self.steps_slider = widgets.IntSlider(value=n_steps, min=0, max=MAX_STEPS, description="grad steps",
                                              continuous_update=False)
        self.new_task_button = widgets.Button(description="new task", icon="refresh")
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.errors = widgets.Output()  # a failing callback shows its traceback here instead of vanishing
        self.k_slider.observe(self._on_change, names="value")
        self.steps_slider.observe(self._on_change, names="value")
        self.new_task_button.on_click(self._on_new_task)
        self.new_task()

    # -- state -------------------------------------------------------------
    def new_task(self) -> None:
        """Draw a task and a pool of MAX_K support points; K takes the first K of them."""
        pool = sample_sinusoid_tasks(1, MAX_K, generator=self.generator, support_x_range=self.support_x_range)
        self.amplitude, self.phase = pool.amplitude[0], pool.phase[0]
        self.x_pool, self.y_pool = pool.x_support[0], pool.y_support[0]
        self.y_true = sinusoid(self.x_grid, self.amplitude, self.phase)
        self._cache.clear()
        self.update()

    def predictions(self, learner: Learner, k_shot: int) -> torch.Tensor:
        """Predictions on the grid after 0..MAX_STEPS steps on the first K points, (steps + 1, grid)."""
        key = (learner.name, k_shot)
        if key not in self._cache:
            with torch.no_grad():
                self._cache[key] = torch.stack([
                    functional_call(learner.model, p, (self.x_grid,))[:, 0]
                    for p in adaptation_steps(learner.model, learner.params, self.x_pool[:k_shot],
                                              self.y_pool[:k_shot], inner_lr=learner.inner_lr,
                                              n_inner_steps=MAX_STEPS)])
        return self._cache[key]

    # -- drawing -----------------------------------------------------------
    def update(self) -> None:
        k, steps = self.k_slider.value, self.steps_slider.value
        self.true_line.set_ydata(self.y_true[:, 0])
        self.support_dots.set_data(self.x_pool[:k, 0], self.y_pool[:k, 0])
        parts = [f"A = {self.amplitude:.2f}, φ = {self.phase:.2f} rad; K = {k}, steps = {steps}"]
        for learner, before, after in zip(self.learners, self.before_lines, self.after_lines):
            trajectory = self.predictions(learner, k)
            before.set_ydata(trajectory[0])
            after.set_ydata(trajectory[steps])
            after.set_label(f"{learner.name}, after {steps} step{'s' if steps != 1 else ''}")
            mse = float(((trajectory[steps] - self.y_true[:, 0]) ** 2).mean())
            parts.append(f"{learner.name}: MSE on the curve = {mse:.3f}")
        self.ax.legend(loc="upper right", fontsize=8)
        self.readout.value = "<br>".join(parts)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi)
        self.image.value = buffer.getvalue()

    def _on_change(self, _change: dict) -> None:
        with self.errors:
            self.update()

    def _on_new_task(self, _button: widgets.Button) -> None:
        with self.errors:
            self.new_task()

    def widget(self) -> widgets.Widget:
        controls = widgets.HBox([self.k_slider, self.steps_slider, self.new_task_button])
        return widgets.VBox([controls, self.readout, self.image, self.errors])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget())
