"""The committed checkpoints reproduce the paper's numbers (Finn et al. 2017, Table 2)."""
import pytest

from helpers.checkpoints import load_checkpoint
from helpers.evaluate import (PAPER_TABLE2_MAML_K5, PAPER_TABLE2_PRETRAINED_K5, SINUSOID_DIVERGED_MSE,
                              evaluate_sinusoid, evaluate_sinusoid_oracle, tune_inner_lr)
from helpers.experiments import EXPERIMENTS, get_experiment
from helpers.metrics import PRETRAINED_LR_CANDIDATES
from helpers.train import MAY_DIFFER_ON_RESUME


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


@pytest.fixture(scope="module")
def baselines():
    loaded = {}
    for name in ("sinusoid_pretrained", "sinusoid_oracle"):
        experiment = get_experiment(name)
        checkpoint = load_checkpoint(experiment.checkpoint_path, expected_model_config=experiment.make_model().config())
        model = checkpoint.build_model()
        loaded[name] = (checkpoint, model, {k: v.detach() for k, v in model.named_parameters()})
    return loaded


def test_maml_beats_pretrained_and_oracle_beats_both(sinusoid_maml, baselines):
    _, model, params = sinusoid_maml
    checkpoint, pre_model, pre_params = baselines["sinusoid_pretrained"]
    _, oracle_model, oracle_params = baselines["sinusoid_oracle"]
    pretrained_lr = checkpoint.metrics["tuned_inner_lr"]
    maml = evaluate_sinusoid(model, params, k_shots=(5, 10, 20))
    pre = evaluate_sinusoid(pre_model, pre_params, k_shots=(5, 10, 20), inner_lr=pretrained_lr)
    oracle = evaluate_sinusoid_oracle(oracle_model, oracle_params, k_shots=(5, 10, 20))
    for k in (5, 10, 20):
        m, p, o = maml[k], pre[k], oracle[k].mean[0]
        assert ((m.mean + m.ci95)[1:] < (p.mean - p.ci95)[1:]).all(), f"K={k}: MAML and pretrained CIs overlap"
        assert (o < m.mean[1:]).all() and (o < p.mean[1:]).all(), f"K={k}: oracle not below both"
    for steps, paper in PAPER_TABLE2_PRETRAINED_K5.items():
        assert abs(pre[5].mean[steps] / paper - 1) <= 0.30, f"pretrained K=5, {steps} steps: {pre[5].row(steps)}"


def test_pretrained_step_size_was_tuned_on_validation_tasks(baselines):
    checkpoint, model, params = baselines["sinusoid_pretrained"]
    best, scores = tune_inner_lr(model, params, PRETRAINED_LR_CANDIDATES)
    assert best == checkpoint.metrics["tuned_inner_lr"]
    assert scores[best] == min(scores.values())


def test_half_range_maml_extrapolates_better_than_pretrained(sinusoid_maml, baselines):
    _, model, params = sinusoid_maml
    checkpoint, pre_model, pre_params = baselines["sinusoid_pretrained"]
    unseen = dict(k_shots=(5,), support_x_range=(-5.0, 0.0), query_x_range=(0.0, 5.0))
    maml = evaluate_sinusoid(model, params, **unseen)[5]
    pre = evaluate_sinusoid(pre_model, pre_params, inner_lr=checkpoint.metrics["tuned_inner_lr"], **unseen)[5]
    # medians: a few tasks of both models diverge under 10 steps and would decide a mean (see notebook 02)
    assert maml.median[10] < 0.5 * pre.median[10]


@pytest.mark.parametrize("name", sorted(name for name in EXPERIMENTS if get_experiment(name).checkpoint_path.exists()))
def test_shipped_checkpoints_record_the_objective_config_of_today(name):
    """A resume refuses settings that differ from the checkpoint's, so the recorded keys and values must not drift
    (bar how the work is scheduled, e.g. vmap or loop, which gives the same gradients)."""
    experiment = get_experiment(name)
    recorded = load_checkpoint(experiment.checkpoint_path).train_config
    today = {key: value for key, value in experiment.objective_config.items() if key not in MAY_DIFFER_ON_RESUME}
    assert {key: recorded.get(key, "missing") for key in today} == today
