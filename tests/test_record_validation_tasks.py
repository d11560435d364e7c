"""Each validation score in a shipped checkpoint says how many tasks it averages (tools/record_validation_tasks.py)."""
import sys
from pathlib import Path

import pytest

from helpers.checkpoints import Checkpoint, load_checkpoint
from helpers.experiments import VALIDATION_TASKS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import record_validation_tasks  # noqa: E402


def checkpoint(iterations, recorded=(), **train_config):
    return Checkpoint(experiment="x", model_config={}, state_dict={}, iteration=max(iterations),
                      train_config=train_config, validation_history=[(it, 0.5) for it in iterations],
                      validation_tasks=list(recorded))


def test_points_from_before_the_switch_averaged_100_tasks_later_ones_the_current_count():
    assert record_validation_tasks.counts(checkpoint([500, 1000, 1500]), {500, 1000}) == [100, 100, VALIDATION_TASKS]


def test_recorded_counts_and_a_runs_own_setting_come_before_the_inference():
    assert record_validation_tasks.counts(checkpoint([500, 1000, 1500], [300]), {500, 1000}) == [300, 100, 300]
    assert record_validation_tasks.counts(checkpoint([500, 1000], validation_tasks=50), {500}) == [50, 50]
    assert record_validation_tasks.counts(checkpoint([500, 1000], [7, 8]), {500}) == [7, 8]


def test_a_checkpoint_of_unknown_history_keeps_its_unrecorded_points_unknown():
    assert record_validation_tasks.counts(checkpoint([500, 1000], [300]), None) == [300, None]
    assert record_validation_tasks.iterations_at(record_validation_tasks.SWITCH, Path("/tmp/elsewhere.pt")) is None


SHIPPED = sorted(p for p in (ROOT / "data").rglob("*.pt") if load_checkpoint(p).validation_history)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_validation_score_has_its_task_count(path):
    points = load_checkpoint(path).validation_points()
    assert all(count in (100, 300) for _, _, count in points), [(it, c) for it, _, c in points]
    counts = [count for _, _, count in points]
    assert counts == sorted(counts), "validation moved from 100 to 300 tasks, never back"


def test_shipped_checkpoints_are_found():
    assert len(SHIPPED) >= 7
