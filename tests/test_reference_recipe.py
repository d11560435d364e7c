"""tools/reference_recipe.py: the reference code's loss and net, as the A/B runs of the Table 1 cells use them."""
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import ab_legs
from helpers.experiments import FEWSHOT_CELLS, fewshot_model
from helpers.maml import InnerLoop, adapt
from helpers.metrics import paired_difference
from helpers.models import BatchStatsNorm2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import reference_recipe  # noqa: E402

OMNIGLOT = Path(os.environ.get("OMNIGLOT_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot")


def test_summed_loss_is_n_times_the_mean_so_a_step_is_n_times_as_large() -> None:
    torch.manual_seed(0)
    n_way, k_shot = 5, 3
    logits, labels = torch.randn(n_way * k_shot, n_way), torch.arange(n_way).repeat_interleave(k_shot)
    summed = reference_recipe.summed_over_shots(k_shot)(logits, labels)
    torch.testing.assert_close(summed, n_way * F.cross_entropy(logits, labels))


def test_reference_net_has_no_batch_norm_scale_and_never_adapts_its_shift() -> None:
    cell = FEWSHOT_CELLS["omniglot_5way_1shot"]
    torch.manual_seed(0)
    model = fewshot_model(cell)
    adapted = reference_recipe.reference_net(model, cell)
    norms = [m for m in model.modules() if isinstance(m, BatchStatsNorm2d)]
    assert all("weight" not in dict(m.named_parameters()) and m.eps == 1e-3 for m in norms)
    assert model.classifier.in_features == 64 and model(torch.rand(3, 1, 28, 28)).shape == (3, 5)
    params = dict(model.named_parameters())
    assert set(params) - adapted == {f"features.{i}.bias" for i in (1, 4, 7, 10)}
    x, y = torch.rand(5, 1, 28, 28), torch.arange(5)
    after = adapt(model, params, x, y, InnerLoop(0.4, 2, loss_fn=reference_recipe.summed_over_shots(1),
                                                 adapted=adapted))
    assert all(torch.equal(after[name], params[name]) for name in set(params) - adapted)
    assert not torch.equal(after["features.0.weight"], params["features.0.weight"])


def test_per_image_factor_turns_the_summed_query_loss_into_the_mean() -> None:
    torch.manual_seed(0)
    for name in ("omniglot_20way_1shot", "miniimagenet_5way_1shot"):
        cell = FEWSHOT_CELLS[name]
        images = cell.n_way * cell.n_query
        logits, labels = torch.randn(images, cell.n_way), torch.arange(cell.n_way).repeat_interleave(cell.n_query)
        summed = reference_recipe.summed_over_shots(cell.k_shot)(logits, labels)
        torch.testing.assert_close(summed * ab_legs.per_image(cell, True), F.cross_entropy(logits, labels))
        assert ab_legs.per_image(cell, False) == 1.0


needs_omniglot = pytest.mark.skipif(not (OMNIGLOT / "images_background.zip").is_file(),
                                    reason=f"no Omniglot archives in {OMNIGLOT}")
TINY = dict(validate_every=4, validation_tasks=3, test_tasks=3, block=2)


@needs_omniglot
def test_variants_train_from_the_same_seed_and_report_per_image_losses(tmp_path: Path) -> None:
    results = {variant: reference_recipe.leg("omniglot_5way_1shot", variant, until=4, score_at=(),
                                             checkpoint_dir=tmp_path / "first", **TINY)
               for variant in ("project", "reference")}
    for result in results.values():
        assert len(result["loss_per_image"]) == 2 and [it for it, _ in result["validation"]] == [4]
        assert result["validation_tasks"] == [TINY["validation_tasks"]]  # one count per validation point
        assert 0 < min(result["loss_per_image"]) and 0 <= result["validation"][0][1] <= 100
    again = reference_recipe.leg("omniglot_5way_1shot", "reference", until=4, score_at=(),
                                 checkpoint_dir=tmp_path / "again", **TINY)
    assert again["loss_per_image"] == results["reference"]["loss_per_image"]  # same seed, same numbers
    assert results["project"]["loss_per_image"] != results["reference"]["loss_per_image"]


@needs_omniglot
def test_a_leg_scores_each_milestone_and_resumes_as_one_unbroken_run(tmp_path: Path) -> None:
    unbroken = reference_recipe.leg("omniglot_5way_1shot", "loss", until=4, score_at=(),
                                    checkpoint_dir=tmp_path / "unbroken", **TINY)
    assert unbroken["test_at_iteration"] == {}
    first = reference_recipe.leg("omniglot_5way_1shot", "loss", until=2, score_at=(2, 4),
                                 checkpoint_dir=tmp_path / "legs", **TINY)
    assert first["iteration"] == 2 and set(first["test_at_iteration"]) == {"2"}
    second = reference_recipe.leg("omniglot_5way_1shot", "loss", until=4, score_at=(2, 4),
                                  checkpoint_dir=tmp_path / "legs", **TINY)
    assert second["iteration"] == 4 and set(second["test_at_iteration"]) == {"2", "4"}
    assert second["test_at_iteration"]["2"] == first["test_at_iteration"]["2"]  # scored once, kept
    assert second["loss_per_image"] == unbroken["loss_per_image"]
    assert second["validation"] == unbroken["validation"]
    scores = second["test_at_iteration"]["4"]
    assert scores["test_tasks"] == 3 and 0 <= scores["test_accuracy_step1"]["mean"] <= 100
    steps = FEWSHOT_CELLS["omniglot_5way_1shot"].test_steps
    for prefix in ("test_accuracy", "test_accuracy_15query"):  # each task kept, and they make the stored mean
        tasks = scores[f"{prefix}_step{steps}_per_task"]
        assert len(tasks) == 3 and abs(sum(tasks) / 3 - scores[f"{prefix}_step{steps}"]["mean"]) < 0.01
    assert ab_legs.stored_legs("omniglot_5way_1shot", tmp_path / "legs") == {"loss": second}


def test_shipped_legs_are_scored_at_every_milestone_they_passed() -> None:
    """notebook 04 draws these: each leg validated every 500 iterations on 300 tasks, scored on 600 at milestones."""
    legs = ab_legs.stored_legs("miniimagenet_5way_1shot_first_order")
    assert {"loss", "reference"} <= legs.keys()
    for variant, leg in legs.items():
        assert set(leg["validation_tasks"]) == {300} and [it for it, _ in leg["validation"]] == \
            list(range(500, leg["iteration"] + 1, 500)), variant
        assert sorted(map(int, leg["test_at_iteration"])) == [m for m in (2000, 4000, 6000) if m <= leg["iteration"]]
        assert all(s["test_tasks"] == 600 for s in leg["test_at_iteration"].values())
        assert len(leg["loss_per_image"]) == leg["iteration"] // leg["block"]


@needs_omniglot
def test_a_leg_scores_with_its_own_inner_step_and_adapted_weights(tmp_path: Path) -> None:
    """The summed loss's step α is a step of N·α on the mean; the reference net never adapts its shifts."""
    cell = FEWSHOT_CELLS["omniglot_5way_1shot"]
    reference = reference_recipe.make_variant("omniglot_5way_1shot", "reference")
    assert reference.inner_lr == cell.n_way * cell.inner_lr and reference.adapted is not None
    project = reference_recipe.make_variant("omniglot_5way_1shot", "project")
    assert project.inner_lr == cell.inner_lr and project.adapted is None
    x, y = torch.rand(5, 1, 28, 28, dtype=torch.float64), torch.arange(5)  # float64: equal up to rounding
    params = dict(reference.model.double().named_parameters())
    summed_step = adapt(reference.model, params, x, y, reference.objective.inner)
    mean_step = adapt(reference.model, params, x, y, InnerLoop(reference.inner_lr, reference.objective.inner.steps,
                                                                loss_fn=F.cross_entropy, adapted=reference.adapted))
    for name in params:
        torch.testing.assert_close(summed_step[name], mean_step[name])


@needs_omniglot
def test_rescoring_keeps_each_task_and_refuses_a_checkpoint_the_stored_scores_did_not_come_from(tmp_path: Path) -> None:
    leg = reference_recipe.leg("omniglot_5way_1shot", "loss", until=2, score_at=(2,), checkpoint_dir=tmp_path, **TINY)
    kept = leg["test_at_iteration"]["2"]
    path = ab_legs.leg_path("omniglot_5way_1shot", "loss", tmp_path)
    means_only = {k: v for k, v in kept.items() if not k.endswith("_per_task")}  # as scores were first stored
    ab_legs.scores_path(path).write_text(json.dumps({"2": means_only}))
    again = reference_recipe.rescore("omniglot_5way_1shot", "loss", test_tasks=3, checkpoint_dir=tmp_path)
    assert again == kept and ab_legs.read_scores(path) == {"2": kept}
    step1 = kept["test_accuracy_step1"]
    for wrong in ({"mean": step1["mean"] + 1.0, "ci95": step1["ci95"]},
                  {"mean": step1["mean"], "ci95": step1["ci95"] + 1.0}):
        means_only["test_accuracy_step1"] = wrong  # another mean, or the same mean with another interval
        ab_legs.scores_path(path).write_text(json.dumps({"2": means_only}))
        with pytest.raises(RuntimeError, match="not the checkpoint"):
            reference_recipe.rescore("omniglot_5way_1shot", "loss", test_tasks=3, checkpoint_dir=tmp_path)
        assert ab_legs.read_scores(path) == {"2": means_only}  # nothing written


def test_paired_difference_is_the_interval_of_the_per_task_differences() -> None:
    a, b = [50.0, 60.0, 70.0, 80.0], [40.0, 52.0, 58.0, 70.0]  # differences 10, 8, 12, 10: mean 10, σ² 8/3
    mean, ci95 = paired_difference(a, b)
    assert mean == pytest.approx(10.0) and ci95 == pytest.approx(1.96 * math.sqrt(8 / 3 / 4))
    assert paired_difference(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError, match="equal lists"):
        paired_difference(a, b[:3])


def test_readme_and_notes_quote_the_stored_a_b_scores() -> None:
    """The A/B figures typed into the README and docs/miniimagenet_notes.md are the ones in data/ab/."""
    from itertools import combinations

    legs = ab_legs.stored_legs("miniimagenet_5way_1shot_first_order")
    assert legs.keys() == {"project", "loss", "reference"}
    stored = set()
    for leg in legs.values():
        for scores in leg["test_at_iteration"].values():
            stored |= {f"{s['mean']:.2f} ± {s['ci95']:.2f}" for k, s in scores.items() if isinstance(s, dict)}
    for prefix in ("test_accuracy", "test_accuracy_15query"):
        key = f"{prefix}_step10_per_task"
        for a, b in combinations(legs.values(), 2):
            mean, ci95 = paired_difference(a["test_at_iteration"]["6000"][key], b["test_at_iteration"]["6000"][key])
            stored |= {f"{abs(mean):.2f} ± {ci95:.2f}"}
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    readme = readme[readme.index("On MiniImagenet 5-way 1-shot, first order (600 test tasks"):readme.index("## The package")]
    notes = (root / "docs" / "miniimagenet_notes.md").read_text()
    notes = notes[notes.index("**The long A/B**"):notes.index("## Settings: meta-batch size")]
    for where, text in (("README", readme), ("notes", notes)):
        quoted = re.findall(r"(\d+\.\d\d) ± (\d\.\d\d)", text)
        assert len(quoted) >= 9, where
        missing = [f"{m} ± {c}" for m, c in quoted if f"{m} ± {c}" not in stored]
        assert not missing, f"{where} quotes A/B scores that data/ab/ does not hold: {missing}"


def test_readme_and_notes_quote_each_a_b_score_beside_its_variant_and_iteration() -> None:
    """Not only stored figures, but each in its own place: the notes' table row by row, the README's sentence
    variant by variant, and each paired difference under its pair's name."""
    legs = ab_legs.stored_legs("miniimagenet_5way_1shot_first_order")

    def score(variant: str, it: int, prefix: str) -> str:
        s = legs[variant]["test_at_iteration"][str(it)][f"{prefix}_step10"]
        return f"{s['mean']:.2f} ± {s['ci95']:.2f}"

    def paired(a: str, b: str, prefix: str) -> tuple[float, float]:
        key = f"{prefix}_step10_per_task"
        return paired_difference(legs[a]["test_at_iteration"]["6000"][key], legs[b]["test_at_iteration"]["6000"][key])

    root = Path(__file__).resolve().parents[1]
    notes = (root / "docs" / "miniimagenet_notes.md").read_text()
    readme = " ".join((root / "README.md").read_text().split())
    flat_notes = " ".join(notes.split())
    for it in (2000, 4000, 6000):
        row = " | ".join(f"{score(v, it, 'test_accuracy_15query')} ({score(v, it, 'test_accuracy')})"
                         for v in ("project", "loss", "reference"))
        assert f"| {it:,} | {row} |" in notes, f"the notes' table row at {it:,}"
        p, l, r = (score(v, it, "test_accuracy_15query") for v in ("project", "loss", "reference"))
        said = (f"at 2,000 iterations this project {p}%, loss and net {r}%, loss {l}%" if it == 2000
                else f"at {it:,} {p}, {r}, {l}")
        assert said in readme, f"the README's scores at {it:,}"
    for prefix in ("test_accuracy_15query", "test_accuracy"):
        for a, b in (("project", "loss"), ("project", "reference"), ("loss", "reference")):
            mean, ci95 = paired(a, b, prefix)
            assert f"{a} − {b} {'−' if mean < 0 else '+'}{abs(mean):.2f} ± {ci95:.2f}" in flat_notes, (a, b, prefix)
    (behind_loss, ci_loss), (behind_ref, ci_ref) = (paired("project", v, "test_accuracy_15query")
                                                    for v in ("loss", "reference"))
    assert behind_loss < 0 and behind_ref < 0  # the README says "behind"
    assert (f"this project's run is {-behind_loss:.2f} ± {ci_loss:.2f} points behind the loss and "
            f"{-behind_ref:.2f} ± {ci_ref:.2f} behind the loss and net") in readme
