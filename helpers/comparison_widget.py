"""Two meta-learning algorithms adapting to the same sinusoid task, side by side (notebook 05).

The notebook-01 widget with two learner slots whose contents the reader picks
from drop-downs; K, steps and new task work as there, and the figure is
redrawn in place.
"""
from __future__ import annotations

import ipywidgets as widgets

from .widgets import Learner, SinusoidAdaptationWidget

SLOT_COLORS = ("tab:blue", "tab:green")


class AlgorithmComparisonWidget(SinusoidAdaptationWidget):
    """Pick two of `learners` (by name) and watch both adapt to the same K points."""

    def __init__(self, learners: list[Learner], *, left: str | None = None, right: str | None = None,
                 **options) -> None:
        if len(learners) < 2:
            raise ValueError(f"need at least two learners to compare, got {len(learners)}")
        self.pool = {learner.name: learner for learner in learners}
        if len(self.pool) != len(learners):
            raise ValueError("learner names must be unique")
        names = list(self.pool)
        left, right = left or names[0], right or names[1]
        for name in (left, right):
            if name not in self.pool:
                raise ValueError(f"unknown learner {name!r}; known: {names}")
        self.choosers = [widgets.Dropdown(options=names, value=name, description=side,
                                          layout=widgets.Layout(width="340px"))
                         for name, side in ((left, "blue"), (right, "green"))]
        super().__init__([self._slot(left, 0), self._slot(right, 1)], **options)
        for chooser in self.choosers:
            chooser.observe(self._on_choose, names="value")

    def _slot(self, name: str, index: int) -> Learner:
        learner = self.pool[name]
        return Learner(learner.name, learner.model, learner.params, learner.inner_lr, SLOT_COLORS[index],
                       adapted=learner.adapted, rates=learner.rates)

    def choose(self, index: int, name: str) -> None:
        """Put learner `name` in slot `index` (0: blue, 1: green) and redraw; its drop-down follows."""
        if name not in self.pool:
            raise ValueError(f"unknown learner {name!r}; known: {list(self.pool)}")
        if self.choosers[index].value != name:
            self.choosers[index].value = name  # its observer calls back here
            return
        self.learners[index] = self._slot(name, index)
        self._cache = {key: value for key, value in self._cache.items() if key[0] in
                       {learner.name for learner in self.learners}}
        lines = [self.before_lines[index], *self.step_lines[index], self.after_lines[index]]
        labels = [f"{name}, before adaptation", *(f"{name}, after each earlier step" if i == 0 else "_"
                                                  for i in range(len(self.step_lines[index]))),
                  f"{name}, after the chosen steps"]
        for line, label in zip(lines, labels):
            line.set_label(label)
        self.ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        self._background = None  # the legend changed: draw the static parts again
        self.update()

    def _on_choose(self, change: dict) -> None:
        with self.errors:
            self.choose(self.choosers.index(change["owner"]), change["new"])

    def widget(self) -> widgets.Widget:
        controls = widgets.HBox([self.k_slider, self.steps_slider, self.new_task_button])
        return widgets.VBox([widgets.HBox(self.choosers), controls, self.half_range, self.readout, self.image,
                             self.errors])
