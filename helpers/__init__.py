"""helpers: the small package behind the MAML notebooks. Importing it runs nothing."""
from . import (batches, checkpoints, download, episodes, evaluate, experiments, fewshot_widgets, maml, metrics,
               miniimagenet, omniglot, plotting, show, stability, tasks, train, widgets)
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
