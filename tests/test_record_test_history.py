"""Earlier legs' test scores are read back from the committed versions of a checkpoint
(tools/record_test_history.py)."""
import subprocess
import sys
from pathlib import Path

from helpers.checkpoints import Checkpoint, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import record_test_history  # noqa: E402


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def save(path, iteration, metrics, history=(), run=0):
    """A checkpoint of run `run` at `iteration`: its loss history goes on from the run's earlier versions."""
    save_checkpoint(Checkpoint(experiment="x", model_config={}, state_dict={}, iteration=iteration,
                               train_config={}, command=f"leg to {iteration}", metrics=metrics,
                               loss_history=[run + i for i in range(iteration // 100)],
                               test_history=list(history)), path)


def commit(repo, message):
    git(repo, "add", "cell.pt")
    git(repo, "commit", "-q", "-m", message)


def test_each_committed_scoring_is_recorded_once_and_the_newest_rescore_wins(tmp_path):
    git(tmp_path, "init", "-q")
    path = tmp_path / "cell.pt"
    save(path, 150, {"score": 0}, run=0.5)  # a run that a `--fresh` start replaced
    commit(tmp_path, "earlier run")
    for iteration, metrics in [(100, {"score": 1}), (200, {}), (200, {"score": 2}), (200, {"score": 3})]:
        save(path, iteration, metrics)  # {}: a checkpoint committed mid-leg, before its scoring
        commit(tmp_path, f"{iteration}")
    save(path, 300, {"score": 4})  # scored, not yet committed
    assert record_test_history.record(path, tmp_path) == 3
    history = load_checkpoint(path).test_history
    assert [(e["iteration"], e["metrics"]["score"], e["command"]) for e in history] == [
        (100, 1, "leg to 100"), (200, 3, "leg to 200"), (300, 4, "leg to 300")]
    assert record_test_history.record(path, tmp_path) == 0


def test_a_scoring_the_checkpoint_already_holds_is_kept(tmp_path):
    git(tmp_path, "init", "-q")
    path = tmp_path / "cell.pt"
    save(path, 100, {"score": 1})
    commit(tmp_path, "100")
    kept = {"iteration": 100, "metrics": {"score": 9}, "command": "rescored"}
    save(path, 200, {"score": 2}, [kept, {"iteration": 200, "metrics": {"score": 2}, "command": "leg to 200"}])
    assert record_test_history.record(path, tmp_path) == 0
    assert load_checkpoint(path).test_history[0] == kept


def test_a_commit_that_deleted_the_checkpoint_is_passed_over(tmp_path):
    git(tmp_path, "init", "-q")
    path = tmp_path / "cell.pt"
    save(path, 100, {"score": 1})
    commit(tmp_path, "100")
    git(tmp_path, "rm", "-q", "cell.pt")
    git(tmp_path, "commit", "-q", "-m", "removed")
    save(path, 200, {"score": 2})  # the same run, put back
    commit(tmp_path, "200")
    assert record_test_history.record(path, tmp_path) == 2
    assert [e["iteration"] for e in load_checkpoint(path).test_history] == [100, 200]
