"""Live adaptation widgets: move K or the number of steps and watch the fit change.

The figure is built once and rendered to an `ipywidgets.Image`; a slider move
only swaps line data (adaptation trajectories are cached per K) and redraws
those lines over a cached background (blitting), so a move costs a few
milliseconds of compute and one PNG encoding. This works the same in
JupyterLab, Voilà and nbval, with no frontend extension.

Each learner that adapts is drawn at every inner step up to the chosen one: the
intermediate steps faint, the chosen step bold, so the path the steps take is
visible, not only where they start and end.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import ipywidgets as widgets
import PIL.Image
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn
from torch.func import functional_call

from .evaluate import predictions_after_steps
from .maml import InnerLoop, Params
from .tasks import X_RANGE, oracle_inputs, sample_sinusoid_tasks, sinusoid

MAX_K, MAX_STEPS = 40, 10
HALF_RANGE = (-5.0, 0.0)
FAINT_ALPHA = 0.3  # intermediate steps: visible as a path, but clearly behind the chosen step


@dataclass
class Learner:
    """A model and the step size it adapts with, drawn as one family of lines.

    `sees_task=True` marks the oracle: it is given [x, A, φ] and never adapts.
    """

    name: str
    model: nn.Module
    params: Params
    inner_lr: float
    color: str = "tab:blue"
    sees_task: bool = False
    adapted: frozenset[str] | None = None  # the parameters that adapt (ANIL: the head); None: all
    rates: Params | None = None  # learned step sizes (Meta-SGD, MAML++) in place of inner_lr

    def inner_loop(self, steps: int) -> InnerLoop:
        """`steps` steps of size `inner_lr` on the MSE: how this learner adapts to the points shown."""
        return InnerLoop(self.inner_lr, steps, adapted=self.adapted)


def render_png(figure: Figure, *, draw: bool = True) -> bytes:
    """The figure as PNG bytes; fast zlib level, since a redraw must take well under 100 ms."""
    canvas = figure.canvas
    if draw:
        canvas.draw()
    image = PIL.Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


class SinusoidAdaptationWidget:
    """True sine, K support points, and each learner before and after adaptation."""

    def __init__(self, learners: list[Learner], *, k_shot: int = 10, n_steps: int = 1, seed: int = 0,
                 half_range_toggle: bool = False, figsize: tuple[float, float] = (9.0, 4.0), dpi: int = 80) -> None:
        self.learners = learners
        self.generator = torch.Generator().manual_seed(seed)
        self.x_grid = torch.linspace(*X_RANGE, 200)[:, None]
        self._cache: dict[tuple[str, int], torch.Tensor] = {}

        self.figure = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.subplots()
        grid = self.x_grid[:, 0].numpy()
        self.true_line, = self.ax.plot(grid, grid * 0, color="tab:red", lw=2, label="true function")
        self.support_dots, = self.ax.plot([], [], "^", color="tab:purple", ms=8, label="K support points")
        self.before_lines, self.after_lines = [], []
        self.step_lines: list[list] = []  # per learner: the faint lines after steps 1..MAX_STEPS - 1
        for learner in learners:
            before_label = f"{learner.name} (knows A, φ)" if learner.sees_task else f"{learner.name}, before adaptation"
            self.before_lines.append(self.ax.plot(grid, grid * 0, ls="--" if learner.sees_task else ":",
                                                  color=learner.color, label=before_label)[0])
            hide = "_" if learner.sees_task else ""  # "_" keeps a line out of the legend
            steps = [self.ax.plot(grid, grid * 0, color=learner.color, lw=1, alpha=FAINT_ALPHA,
                                  label=f"{hide}{learner.name}, after each earlier step" if step == 1 else "_")[0]
                     for step in range(1, MAX_STEPS)]  # shown or hidden by update()
            self.step_lines.append([] if learner.sees_task else steps)
            after = self.ax.plot(grid, grid * 0, color=learner.color, lw=2.5,
                                 label=f"{hide}{learner.name}, after the chosen steps")[0]
            after.set_visible(not learner.sees_task)
            self.after_lines.append(after)
        self.ax.set(xlim=X_RANGE, ylim=(-6, 6), xlabel="x", ylabel="y")
        self.ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        self.figure.tight_layout()
        faint = [line for lines in self.step_lines for line in lines]
        self._dynamic = [self.true_line, self.support_dots, *self.before_lines, *faint, *self.after_lines]
        for artist in self._dynamic:
            artist.set_animated(True)  # drawn over the cached background, not with it
        self._background = None

        self.k_slider = widgets.IntSlider(value=k_shot, min=1, max=MAX_K, description="K (shots)",
                                          continuous_update=False)
        self.steps_slider = widgets.IntSlider(value=n_steps, min=0, max=MAX_STEPS, description="grad steps",
                                              continuous_update=False)
        self.new_task_button = widgets.Button(description="new task", icon="refresh")
        self.half_range = widgets.Checkbox(value=False, description="support points from x < 0 only",
                                           layout=widgets.Layout(display=None if half_range_toggle else "none"))
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.errors = widgets.Output()  # a failing callback shows its traceback here instead of vanishing
        self.k_slider.observe(self._on_change, names="value")
        self.steps_slider.observe(self._on_change, names="value")
        self.half_range.observe(self._on_half_range, names="value")
        self.new_task_button.on_click(self._on_new_task)
        self.new_task()

    # -- state -------------------------------------------------------------
    def new_task(self) -> None:
        """Draw a task, then its pool of support points."""
        task = sample_sinusoid_tasks(1, 1, generator=self.generator)
        self.amplitude, self.phase = task.amplitude[0], task.phase[0]
        self.y_true = sinusoid(self.x_grid, self.amplitude, self.phase)
        self.resample_support()

    def resample_support(self) -> None:
        """MAX_K support points of the current task; K takes the first K of them."""
        low, high = HALF_RANGE if self.half_range.value else X_RANGE
        self.x_pool = low + (high - low) * torch.rand(MAX_K, 1, generator=self.generator)
        self.y_pool = sinusoid(self.x_pool, self.amplitude, self.phase)
        self._cache.clear()
        self.update()

    def predictions(self, learner: Learner, k_shot: int) -> torch.Tensor:
        """Predictions on the grid after 0..MAX_STEPS steps on the first K points, (steps + 1, grid)."""
        key = (learner.name, k_shot)
        if key not in self._cache:
            if learner.sees_task:
                inputs = oracle_inputs(self.x_grid[None], self.amplitude[None], self.phase[None])[0]
                with torch.no_grad():
                    self._cache[key] = functional_call(learner.model, learner.params, (inputs,))[:, 0].expand(
                        MAX_STEPS + 1, -1)
            else:
                self._cache[key] = predictions_after_steps(
                    learner.model, learner.params, self.x_pool[:k_shot], self.y_pool[:k_shot], self.x_grid,
                    learner.inner_loop(MAX_STEPS), learner.rates)
        return self._cache[key]

    # -- drawing -----------------------------------------------------------
    def update(self) -> None:
        k, steps = self.k_slider.value, self.steps_slider.value
        self.true_line.set_ydata(self.y_true[:, 0].numpy())
        self.support_dots.set_data(self.x_pool[:k, 0].numpy(), self.y_pool[:k, 0].numpy())
        earlier = {0: "", 1: "", 2: "faint: step 1, "}.get(steps, f"faint: steps 1–{steps - 1}, ")
        path = f"{earlier}bold: step {steps}"
        parts = [f"A = {self.amplitude:.2f}, φ = {self.phase:.2f} rad; K = {k}, steps = {steps} ({path})"]
        for learner, before, faint, after in zip(self.learners, self.before_lines, self.step_lines, self.after_lines):
            trajectory = self.predictions(learner, k).detach().numpy()  # (steps + 1, grid)
            before.set_ydata(trajectory[0])
            for step, line in enumerate(faint, start=1):
                line.set_visible(step < steps)
                line.set_ydata(trajectory[step])
            after.set_ydata(trajectory[steps])
            mse = float(((trajectory[steps] - self.y_true[:, 0].numpy()) ** 2).mean())
            parts.append(f"{learner.name}: MSE on the curve = {mse:.3f}")
        self.readout.value = "<br>".join(parts)
        self.image.value = self._blit()

    def _blit(self) -> bytes:
        """Axes, ticks and legend never change: draw them once, then only the lines on top."""
        canvas = self.figure.canvas
        if self._background is None:
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.figure.bbox)
        canvas.restore_region(self._background)
        for artist in self._dynamic:
            if artist.get_visible():
                self.ax.draw_artist(artist)
        return render_png(self.figure, draw=False)

    def _on_change(self, _change: dict) -> None:
        with self.errors:
            self.update()

    def _on_half_range(self, _change: dict) -> None:
        with self.errors:
            self.resample_support()

    def _on_new_task(self, _button: widgets.Button) -> None:
        with self.errors:
            self.new_task()

    def widget(self) -> widgets.Widget:
        controls = widgets.HBox([self.k_slider, self.steps_slider, self.new_task_button])
        return widgets.VBox([controls, self.half_range, self.readout, self.image, self.errors])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget())


class ClickToAdaptWidget:
    """Place support points by clicking on the plot and watch each learner adapt to them.

    Needs an interactive canvas (`%matplotlib widget`, from ipympl): pass a
    figure made after switching to it. `add_point(x, y)` is what a click calls,
    so code (and tests) can place points too.
    """

    def __init__(self, learners: list[Learner], figure, *, n_steps: int = 5) -> None:
        self.learners = [learner for learner in learners if not learner.sees_task]
        self.figure, self.ax = figure, figure.add_subplot()
        self.x_grid = torch.linspace(*X_RANGE, 200)[:, None]
        self.points: list[tuple[float, float]] = []
        grid = self.x_grid[:, 0].numpy()
        self.dots, = self.ax.plot([], [], "^", color="tab:purple", ms=9, label="your points")
        self.lines = [self.ax.plot(grid, grid * 0, color=learner.color, lw=2, label=learner.name)[0]
                      for learner in self.learners]
        self.ax.set(xlim=X_RANGE, ylim=(-6, 6), xlabel="x (click to add a point)", ylabel="y",
                    title="Click to place support points")
        self.ax.legend(loc="upper right", fontsize=8)
        self.steps_slider = widgets.IntSlider(value=n_steps, min=0, max=MAX_STEPS, description="grad steps",
                                              continuous_update=False)
        self.clear_button = widgets.Button(description="clear points", icon="trash")
        self.readout = widgets.HTML()
        self.errors = widgets.Output()
        self.steps_slider.observe(lambda _change: self._safely(self.update), names="value")
        self.clear_button.on_click(lambda _button: self._safely(self.clear))
        figure.canvas.mpl_connect("button_press_event", self._on_click)
        self.update()

    def add_point(self, x: float, y: float) -> None:
        self.points.append((float(x), float(y)))
        self.update()

    def clear(self) -> None:
        self.points.clear()
        self.update()

    def update(self) -> None:
        steps = self.steps_slider.value
        if self.points:
            support = torch.tensor(self.points)
            x_support, y_support = support[:, :1], support[:, 1:]
            self.dots.set_data(support[:, 0], support[:, 1])
        else:
            self.dots.set_data([], [])
        for learner, line in zip(self.learners, self.lines):
            if self.points:
                prediction = predictions_after_steps(learner.model, learner.params, x_support, y_support,
                                                     self.x_grid, learner.inner_loop(steps), learner.rates)[-1]
            else:
                with torch.no_grad():
                    prediction = functional_call(learner.model, learner.params, (self.x_grid,))[:, 0]
            line.set_ydata(prediction)
        self.readout.value = f"{len(self.points)} point(s), {steps} gradient step(s)"
        self.figure.canvas.draw_idle()

    def _on_click(self, event) -> None:
        if event.inaxes is self.ax and event.xdata is not None:
            self._safely(lambda: self.add_point(event.xdata, event.ydata))

    def _safely(self, action) -> None:
        with self.errors:
            action()

    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.steps_slider, self.clear_button]), self.readout,
                             self.figure.canvas, self.errors])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget())
