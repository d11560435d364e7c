"""An interactive few-shot episode: support images, query predictions (wrong ones in red), accuracy vs steps."""
from __future__ import annotations

import ipywidgets as widgets
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.func import functional_call

from .episodes import FewShotTasks, sample_episodes
from .maml import Params, adaptation_steps
from .widgets import render_png

MAX_STEPS = 10


class FewShotEpisodeWidget:
    """Pick a test episode, K and the number of steps; see what the adapted classifier predicts."""

    def __init__(self, model: nn.Module, params: Params, images: Tensor, *, n_way: int, inner_lr: float,
                 k_shot: int = 1, n_steps: int = 1, n_query: int = 3, seed: int = 0) -> None:
        self.model, self.params, self.images = model, {k: v.detach() for k, v in params.items()}, images
        self.n_way, self.inner_lr, self.n_query, self.seed = n_way, inner_lr, n_query, seed
        self._cache: dict[tuple[int, int], tuple[FewShotTasks, Tensor]] = {}
        self.episode_slider = widgets.IntSlider(value=0, min=0, max=99, description="episode",
                                                continuous_update=False)
        self.k_slider = widgets.IntSlider(value=k_shot, min=1, max=5, description="K (shots)",
                                          continuous_update=False)
        self.steps_slider = widgets.IntSlider(value=n_steps, min=0, max=MAX_STEPS, description="grad steps",
                                              continuous_update=False)
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.errors = widgets.Output()
        for slider in (self.episode_slider, self.k_slider, self.steps_slider):
            slider.observe(self._on_change, names="value")
        self.figure = Figure(figsize=(10, 1.2 + 0.9 * n_way), dpi=72)
        FigureCanvasAgg(self.figure)
        self.update()

    def episode(self, index: int, k_shot: int) -> tuple[FewShotTasks, Tensor]:
        """The episode and its query predictions after 0..MAX_STEPS steps, (steps + 1, N*Q)."""
        key = (index, k_shot)
        if key not in self._cache:
            generator = torch.Generator().manual_seed(self.seed * 1000 + index)
            task = sample_episodes(self.images, 1, self.n_way, k_shot, self.n_query, generator=generator)
            with torch.no_grad():
                predictions = torch.stack([
                    functional_call(self.model, p, (task.x_query[0],)).argmax(-1)
                    for p in adaptation_steps(self.model, self.params, task.x_support[0], task.y_support[0],
                                              inner_lr=self.inner_lr, n_inner_steps=MAX_STEPS,
                                              loss_fn=F.cross_entropy)])
            self._cache[key] = (task, predictions)
        return self._cache[key]

    def _build(self, k_shot: int) -> None:
        """Lay out the axes for K support columns; done only when K changes, since layout is the slow part."""
        self.figure.clear()
        grid = self.figure.add_gridspec(self.n_way, k_shot + self.n_query + 5, wspace=0.1, hspace=0.35)
        blank = torch.zeros(28, 28)

        def cell(row: int, column: int, title: str = ""):
            ax = self.figure.add_subplot(grid[row, column])
            ax.axis("off")
            ax.set_title(title, fontsize=7)
            return ax.imshow(blank, cmap="gray_r", vmin=0, vmax=1)

        self.support_images = [[cell(n, j, f"label {n}" if j == 0 else "") for j in range(k_shot)]
                               for n in range(self.n_way)]
        self.query_images = [[cell(n, k_shot + 1 + q, " ") for q in range(self.n_query)] for n in range(self.n_way)]
        curve = self.figure.add_subplot(grid[:, -3:])
        self.accuracy_line, = curve.plot(range(MAX_STEPS + 1), [0] * (MAX_STEPS + 1), "o-", ms=3)
        self.accuracy_marker, = curve.plot([0], [0], "o", color="tab:red", ms=8)
        curve.set(xlabel="gradient steps", ylabel="query accuracy (%)", ylim=(0, 105), title="this episode")
        self.figure.suptitle(f"support (left, K = {k_shot}) and query images with predicted label "
                             f"(right; red = wrong)", fontsize=9)
        self._built_for = k_shot

    def update(self) -> None:
        k, steps = self.k_slider.value, self.steps_slider.value
        task, predictions = self.episode(self.episode_slider.value, k)
        if getattr(self, "_built_for", None) != k:
            self._build(k)
        accuracy = (predictions == task.y_query[0]).float().mean(1)  # (steps + 1,)
        for n in range(self.n_way):
            for j, artist in enumerate(self.support_images[n]):
                artist.set_data(task.x_support[0, n * k + j, 0])
            for q, artist in enumerate(self.query_images[n]):
                index = n * self.n_query + q
                artist.set_data(task.x_query[0, index, 0])
                predicted = int(predictions[steps, index])
                artist.axes.title.set_text(f"→ {predicted}")
                artist.axes.title.set_color("tab:green" if predicted == n else "tab:red")
        self.accuracy_line.set_ydata(100 * accuracy)
        self.accuracy_marker.set_data([steps], [100 * accuracy[steps]])
        wrong = int((predictions[steps] != task.y_query[0]).sum())
        self.readout.value = (f"episode {self.episode_slider.value}, {self.n_way}-way {k}-shot, {steps} steps: "
                              f"accuracy {100 * accuracy[steps]:.1f}% ({wrong} of {len(task.y_query[0])} query "
                              f"images wrong)")
        self.image.value = render_png(self.figure)

    def _on_change(self, _change: dict) -> None:
        with self.errors:
            self.update()

    def widget(self) -> widgets.Widget:
        controls = widgets.HBox([self.episode_slider, self.k_slider, self.steps_slider])
        return widgets.VBox([controls, self.readout, self.image, self.errors])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget())
