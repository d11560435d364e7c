"""Notebook 05's shipped variants, tables and runner."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import torch

from helpers import beyond
from helpers.checkpoints import load_checkpoint
from helpers.cost import STEPS_MEASURED


def test_every_variant_is_shipped_finished_and_made_with_its_settings() -> None:
    for variant in beyond.VARIANTS.values():
        checkpoint = load_checkpoint(variant.checkpoint_path, expected_model_config=variant.new_learner().config())
        assert checkpoint.iteration == variant.n_iterations, variant.name
        assert {k: checkpoint.train_config[k] for k in variant.objective_config()} == variant.objective_config()
        assert checkpoint.train_config["cosine_meta_lr"] == variant.algorithm.cosine_meta_lr
        assert checkpoint.optimizer_state is None  # finished: shipped without Adam's state
        assert all(math.isfinite(loss) for loss in checkpoint.loss_history)


def test_tables_cover_every_variant_and_every_measured_step() -> None:
    table = json.loads((beyond.RESULTS / "table.json").read_text())
    labels = {(row["benchmark"], row["label"]) for row in table["rows"]}
    assert {(v.benchmark, v.label) for v in beyond.VARIANTS.values()} <= labels
    assert table["test_tasks"] == 600
    for row in table["rows"]:
        variant = beyond.VARIANTS.get(row["name"])
        if variant is not None:
            assert row["iterations"] == variant.n_iterations
    cost = json.loads((beyond.RESULTS / "cost.json").read_text())
    measured = {(row["experiment"], row["first_order"], row["inner_steps"]) for row in cost["rows"]}
    assert measured == {(e, o, s) for e in ("sinusoid_maml", "omniglot_5way_1shot") for o in (False, True)
                        for s in STEPS_MEASURED}


def test_a_short_run_trains_is_deterministic_and_scores(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(beyond, "CHECKPOINTS", tmp_path)
    variant = replace(beyond.VARIANTS["sinusoid_maml_plus_plus"], n_iterations=20)
    first = beyond.train_variant(variant, progress=False)
    saved = load_checkpoint(variant.checkpoint_path)
    assert saved.iteration == 20 and saved.optimizer_state is None
    variant.checkpoint_path.unlink()
    second = beyond.train_variant(variant, progress=False)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    assert first.rates["net/0/weight"].shape == (5,)  # MAML++: one rate per layer and step
    curve = beyond.scores(variant, first, n_tasks=20)
    assert torch.isfinite(curve.per_task[:, 1]).all()


def test_retiming_keeps_the_scores_and_names_the_machine() -> None:
    table = json.loads((beyond.RESULTS / "table.json").read_text())
    sinusoid = {**table, "rows": [row for row in table["rows"] if row["benchmark"] == "sinusoid"][:2]}
    retimed = beyond.retime_table(sinusoid, repeats=1)
    assert retimed["machine"] == beyond.machine_name() and retimed["threads"] == torch.get_num_threads()
    for before, after in zip(sinusoid["rows"], retimed["rows"]):
        assert {k: v for k, v in after.items() if k != "seconds_per_iteration"} == \
            {k: v for k, v in before.items() if k != "seconds_per_iteration"}
        assert 0 < after["seconds_per_iteration"] < 1  # a sinusoid MLP iteration: milliseconds
