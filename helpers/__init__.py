"""helpers: the small package behind the MAML notebooks. Importing it runs nothing.

Training and evaluation need torch, numpy, matplotlib and tqdm alone (a GPU server has no notebook stack): the
modules that draw widgets or talk to IPython load when first asked for (``helpers.widgets``, ...).
"""
import importlib

from . import (batches, checkpoints, download, episodes, evaluate, experiments, maml, metrics, miniimagenet,
               omniglot, plotting, stability, tasks, train)
from .batches import TaskBatch
from .device import default_device, seed_everything
from .maml import InnerLoop, adapt, adaptation_steps, meta_gradient, meta_loss, query_loss_after_adaptation, task_loss
from .models import SinusoidMLP, build_model
from .tasks import SinusoidTasks, sample_sinusoid_tasks, sinusoid

__all__ = [
    "default_device", "seed_everything",
    "InnerLoop", "TaskBatch",
    "adapt", "adaptation_steps", "meta_gradient", "meta_loss", "query_loss_after_adaptation", "task_loss",
    "SinusoidMLP", "build_model",
    "SinusoidTasks", "sample_sinusoid_tasks", "sinusoid",
]

NOTEBOOK_MODULES = ("widgets", "fewshot_widgets", "comparison_widget", "show")  # need ipywidgets or IPython


def __getattr__(name: str):
    if name in NOTEBOOK_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
