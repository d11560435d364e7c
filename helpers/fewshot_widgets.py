"""An interactive few-shot episode: support images, query predictions (wrong ones in red), accuracy vs steps.

One explorer can hold several meta-trained models (e.g. 5-way and 20-way, each with its own checkpoint,
data and step size); a selector switches between them. Grey images (1 channel) are drawn dark on light,
colour images (3 channels) as they are.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.func import functional_call

from .episodes import FewShotTasks, sample_episodes
from .maml import InnerLoop, Params, adaptation_steps
from .widgets import render_png

MAX_STEPS = 10
MAX_ROWS = 10  # classes per column block: 20-way is drawn as two blocks of 10 rows, not one very tall figure


@dataclass
class FewShotModel:
    """What the explorer needs to adapt one meta-trained model to episodes.

    `images` is the split episodes are drawn from, (classes, examples, H, W) or (classes, examples, C, H, W) uint8.
    """

    model: nn.Module
    params: Params
    images: Tensor
    n_way: int
    inner_lr: float
    rotate: bool = True  # turn classes by multiples of 90° (Omniglot); False for photographs (MiniImagenet)

    @property
    def inner(self) -> InnerLoop:
        """MAX_STEPS steps of size `inner_lr` on the cross-entropy: every step the explorer can show."""
        return InnerLoop(self.inner_lr, MAX_STEPS, loss_fn=F.cross_entropy)


def as_picture(image: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> what imshow takes: (H, W) for grey, (H, W, 3) for colour."""
    if image.shape[0] == 1:
        return image[0].numpy()
    if image.shape[0] == 3:
        return image.permute(1, 2, 0).clamp(0, 1).numpy()
    raise ValueError(f"expected 1 (grey) or 3 (colour) channels, got an image of shape {tuple(image.shape)}")


class FewShotEpisodeWidget:
    """Pick a model, a test episode, K and the number of steps; see what the adapted classifier predicts.

    Either one model, `FewShotEpisodeWidget(model, params, images, n_way=5, inner_lr=0.4)`, or several to
    choose from, `FewShotEpisodeWidget(models={"5-way": FewShotModel(...), "20-way": FewShotModel(...)})`.
    """

    def __init__(self, model: nn.Module | None = None, params: Params | None = None, images: Tensor | None = None,
                 *, n_way: int | None = None, inner_lr: float | None = None, rotate: bool = True,
                 models: Mapping[str, FewShotModel] | None = None, k_shot: int = 1, n_steps: int = 1,
                 n_query: int = 3, seed: int = 0) -> None:
        single = (model, params, images, n_way, inner_lr)
        if models is None and any(part is None for part in single):
            raise ValueError("pass either model, params, images, n_way and inner_lr (one model), "
                             "or models={label: FewShotModel(...)} (several to choose from)")
        if models is not None and any(part is not None for part in single):
            raise ValueError("pass either one model (model, params, images, n_way, inner_lr) or models=..., not both")
        if models is None:
            models = {f"{n_way}-way": FewShotModel(model, params, images, n_way, inner_lr, rotate)}
        if not models:
            raise ValueError("models is empty: give at least one label -> FewShotModel")
        self.models = {label: FewShotModel(m.model, {k: v.detach() for k, v in m.params.items()}, m.images,
                                           m.n_way, m.inner_lr, m.rotate) for label, m in models.items()}
        self.n_query, self.seed = n_query, seed
        self._cache: dict[tuple[str, int, int], tuple[FewShotTasks, Tensor]] = {}
        self.model_selector = widgets.ToggleButtons(options=list(self.models), description="model",
                                                    layout=widgets.Layout(display=None if len(self.models) > 1
                                                                          else "none"))
        self.episode_slider = widgets.IntSlider(value=0, min=0, max=99, description="episode",
                                                continuous_update=False)
        self.k_slider = widgets.IntSlider(value=k_shot, min=1, max=5, description="K (shots)",
                                          continuous_update=False)
        self.steps_slider = widgets.IntSlider(value=n_steps, min=0, max=MAX_STEPS, description="grad steps",
                                              continuous_update=False)
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")
        self.errors = widgets.Output()
        for control in (self.model_selector, self.episode_slider, self.k_slider, self.steps_slider):
            control.observe(self._on_change, names="value")
        self.figure = Figure(figsize=(10, 5), dpi=72)
        FigureCanvasAgg(self.figure)
        self.update()

    # The single-model attributes of the original API, for the model now selected.
    @property
    def current(self) -> FewShotModel:
        return self.models[self.model_selector.value]

    @property
    def n_way(self) -> int:
        return self.current.n_way

    @property
    def inner_lr(self) -> float:
        return self.current.inner_lr

    def episode(self, index: int, k_shot: int) -> tuple[FewShotTasks, Tensor]:
        """The selected model's episode and its query predictions after 0..MAX_STEPS steps, (steps + 1, N*Q)."""
        label, chosen = self.model_selector.value, self.current
        key = (label, index, k_shot)
        if key not in self._cache:
            generator = torch.Generator().manual_seed(self.seed * 1000 + index)
            task = sample_episodes(chosen.images, 1, chosen.n_way, k_shot, self.n_query, generator=generator,
                                   rotate=chosen.rotate)
            with torch.no_grad():
                predictions = torch.stack([
                    functional_call(chosen.model, p, (task.x_query[0],)).argmax(-1)
                    for p in adaptation_steps(chosen.model, chosen.params, task.x_support[0], task.y_support[0],
                                              chosen.inner)])
            self._cache[key] = (task, predictions)
        return self._cache[key]

    def _build(self, task: FewShotTasks, k_shot: int) -> None:
        """Lay out the axes for this model and K; done only when either changes, since layout is the slow part.

        Classes go in blocks of at most MAX_ROWS rows, side by side; each row is K support images, a gap,
        and the query images.
        """
        n_way = self.n_way
        blocks, rows = math.ceil(n_way / MAX_ROWS), min(n_way, MAX_ROWS)
        per_block = k_shot + self.n_query + 2  # support, gap, query, gap
        self.figure.clear()
        self.figure.set_size_inches(10 if blocks == 1 else 13, 1.2 + (0.9 if rows <= 5 else 0.62) * rows)
        grid = self.figure.add_gridspec(rows, blocks * per_block + 3, wspace=0.1, hspace=0.35)
        picture = as_picture(task.x_support[0, 0])
        blank = np.zeros_like(picture)
        grey = picture.ndim == 2

        def cell(n: int, column: int, title: str = ""):
            ax = self.figure.add_subplot(grid[n % MAX_ROWS, (n // MAX_ROWS) * per_block + column])
            ax.axis("off")
            ax.set_title(title, fontsize=7)
            return ax.imshow(blank, cmap="gray_r" if grey else None, vmin=0, vmax=1)

        self.support_images = [[cell(n, j, f"label {n}" if j == 0 else "") for j in range(k_shot)]
                               for n in range(n_way)]
        self.query_images = [[cell(n, k_shot + 1 + q, " ") for q in range(self.n_query)] for n in range(n_way)]
        curve = self.figure.add_subplot(grid[:, -3:])
        self.accuracy_line, = curve.plot(range(MAX_STEPS + 1), [0] * (MAX_STEPS + 1), "o-", ms=3)
        self.accuracy_marker, = curve.plot([0], [0], "o", color="tab:red", ms=8)
        curve.set(xlabel="gradient steps", ylabel="query accuracy (%)", ylim=(0, 105), title="this episode")
        self.figure.suptitle(f"{self.model_selector.value}: support (left, K = {k_shot}) and query images with "
                             f"predicted label (right; red = wrong)", fontsize=9)
        self._built_for = (self.model_selector.value, k_shot)

    def update(self) -> None:
        k, steps = self.k_slider.value, self.steps_slider.value
        task, predictions = self.episode(self.episode_slider.value, k)
        if getattr(self, "_built_for", None) != (self.model_selector.value, k):
            self._build(task, k)
        accuracy = (predictions == task.y_query[0]).float().mean(1)  # (steps + 1,)
        for n in range(self.n_way):
            for j, artist in enumerate(self.support_images[n]):
                artist.set_data(as_picture(task.x_support[0, n * k + j]))
            for q, artist in enumerate(self.query_images[n]):
                index = n * self.n_query + q
                artist.set_data(as_picture(task.x_query[0, index]))
                predicted = int(predictions[steps, index])
                artist.axes.title.set_text(f"→ {predicted}")
                artist.axes.title.set_color("tab:green" if predicted == n else "tab:red")
        self.accuracy_line.set_ydata(100 * accuracy.numpy())
        self.accuracy_marker.set_data([steps], [100 * float(accuracy[steps])])
        wrong = int((predictions[steps] != task.y_query[0]).sum())
        self.readout.value = (f"episode {self.episode_slider.value}, {self.n_way}-way {k}-shot, {steps} steps: "
                              f"accuracy {100 * accuracy[steps]:.1f}% ({wrong} of {len(task.y_query[0])} query "
                              f"images wrong; model: {self.model_selector.value})")
        self.image.value = render_png(self.figure)

    def _on_change(self, _change: dict) -> None:
        with self.errors:
            self.update()

    def widget(self) -> widgets.Widget:
        controls = widgets.HBox([self.episode_slider, self.k_slider, self.steps_slider])
        return widgets.VBox([self.model_selector, controls, self.readout, self.image, self.errors])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget())
