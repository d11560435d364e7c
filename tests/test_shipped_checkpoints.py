"""The committed checkpoints reproduce the paper's numbers (Finn et al. 2017, Table 2)."""
import pytest

from helpers.checkpoints import load_checkpoint
from helpers.evaluate import PAPER_TABLE2_MAML_K5, SINUSOID_DIVERGED_MSE, evaluate_sinusoid
from helpers.experiments import get_experiment


@pytest.fixture(scope="module")
def sinusoid_maml():
    experiment = get_experiment("sinusoid_maml")
    checkpoint = load_checkpoint(experiment.checkpoint_path, expected_model_config=experiment.make_model().config())
    model = checkpoint.build_model()
    return checkpoint, model, dict(model.named_parameters())


def test_sinusoid_maml_k5_matches_paper_table2(sinusoid_maml):
    _, model, params = sinusoid_maml
    curve = evaluate_sinusoid(model, params, k_shots=(5,), n_tasks=600)[5]
    for steps, paper in PAPER_TABLE2_MAML_K5.items():
        assert curve.mean[steps] <= paper, f"K=5 after {steps} steps: {curve.row(steps)} > paper {paper}"
    assert not curve.diverged(SINUSOID_DIVERGED_MSE)[:, -1].any()


def test_sinusoid_maml_checkpoint_metadata(sinusoid_maml):
    checkpoint, _, _ = sinusoid_maml
    assert checkpoint.iteration == 70_000
    assert checkpoint.command == "python -m helpers train sinusoid_maml --fresh"
    assert checkpoint.train_config["inner_lr"] == 0.01 and checkpoint.train_config["meta_batch_size"] == 25
    assert checkpoint.metrics["k5_step1"]["mean"] <= PAPER_TABLE2_MAML_K5[1]
