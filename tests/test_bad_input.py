"""Bad input fails with an error that names the argument and the allowed range."""
import pytest
import torch

from helpers import InnerLoop, SinusoidMLP, TaskBatch, adapt, sample_sinusoid_tasks
from helpers.checkpoints import Checkpoint, load_checkpoint, save_checkpoint
from helpers.experiments import MAMLSettings
from helpers.models import build_model
from helpers.train import TrainConfig


@pytest.fixture
def setup():
    model = SinusoidMLP()
    tasks = sample_sinusoid_tasks(2, 5, generator=torch.Generator().manual_seed(0))
    return model, dict(model.named_parameters()), tasks


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0.0, steps=1), r"lr must be a finite number > 0, got 0.0"),
    (dict(lr=-0.1, steps=1), r"lr must be a finite number > 0"),
    (dict(lr=0.01, steps=-1), r"steps must be an integer >= 0, got -1"),
    (dict(lr=0.01, steps=1.5), r"steps must be an integer >= 0, got 1.5"),
    (dict(lr=0.01, steps=1, adapted=()), r"adapted must name at least one parameter"),
])
def test_inner_loop_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InnerLoop(**kwargs)


def test_adapt_rejects_an_inner_loop_that_moves_parameters_the_model_lacks(setup):
    model, params, tasks = setup
    with pytest.raises(ValueError, match=r"inner.adapted names parameters the model lacks: \['head.weight'\]"):
        adapt(model, params, tasks.x_support[0], tasks.y_support[0], InnerLoop(0.01, 1, adapted={"head.weight"}))


def test_task_batch_rejects_empty_support_and_mismatched_tasks(setup):
    _, _, tasks = setup
    with pytest.raises(ValueError, match=r"k_shot .* must be >= 1"):
        TaskBatch(tasks.x_support[:, :0], tasks.y_support[:, :0], tasks.x_query, tasks.y_query)
    with pytest.raises(ValueError, match=r"the same number of tasks"):
        TaskBatch(tasks.x_support, tasks.y_support, tasks.x_query[:1], tasks.y_query[:1])


@pytest.mark.parametrize("kwargs, name", [
    (dict(meta_batch_size=0), "meta_batch_size must be an integer >= 1"),
    (dict(k_shot=0), "k_shot must be an integer >= 1"),
    (dict(inner_lr=0), "inner_lr must be a finite number > 0"),
    (dict(n_inner_steps=-2), "n_inner_steps must be an integer >= 0"),
])
def test_settings_reject_bad_values(kwargs, name):
    base = dict(inner_lr=0.01, n_inner_steps=1, meta_batch_size=25, k_shot=10, n_query=10)
    with pytest.raises(ValueError, match=name):
        MAMLSettings(**{**base, **kwargs})


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="n_iterations must be an integer >= 1"):
        TrainConfig(n_iterations=0)
    with pytest.raises(ValueError, match="meta_lr must be a finite number > 0"):
        TrainConfig(n_iterations=10, meta_lr=0)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    model = SinusoidMLP(hidden=(20,))
    path = save_checkpoint(Checkpoint("x", model.config(), model.state_dict(), 0, {}), tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"holds architecture .*'hidden': \[20\].* but .*'hidden': \[40, 40\]"):
        load_checkpoint(path, expected_model_config=SinusoidMLP().config())


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a helpers checkpoint"):
        load_checkpoint(junk)
    other = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="is not a helpers checkpoint"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model name"):
        build_model({"name": "Transformer"})
