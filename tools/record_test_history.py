"""Record, in checkpoints written before it was kept, the test scores of their earlier legs.

A checkpoint keeps every scoring of its run in `test_history` (`Checkpoint.record_scores`). Before it did, each
leg's scores were overwritten by the next leg's, but each committed version of the file still holds its own: this
reads them from the repository's history of the file (`git log`), newest first, so that a rescoring committed
later at the same iteration wins, back to the first version of the same run (its loss history a prefix of the
current one: a version from before a `--fresh` start is another model). Entries a checkpoint already holds are kept
as they are, so a second run changes nothing.

    python tools/record_test_history.py [CHECKPOINT ...]   # default: the few-shot cells' checkpoints
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from helpers.experiments import FEWSHOT_CELLS, get_experiment  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from committed_checkpoint import commits_of, committed_payload  # noqa: E402


def committed_scorings(path: Path, loss_history: list[float], repo: Path = ROOT) -> list[dict[str, Any]]:
    """One entry per iteration at which a committed version of `path` from the run whose losses so far are
    `loss_history` holds test scores, oldest first."""
    found: dict[int, dict[str, Any]] = {}
    for commit in commits_of(path, repo):  # newest first
        payload = committed_payload(commit, path, repo)
        if payload is None:  # the commit that deleted it
            continue
        if list(payload["loss_history"]) != loss_history[:len(payload["loss_history"])]:
            break  # this version and all older ones come from an earlier run
        iteration, metrics = int(payload["iteration"]), payload.get("metrics") or {}
        if metrics and iteration not in found:
            found[iteration] = {"iteration": iteration, "metrics": metrics, "command": payload.get("command", "")}
    return [found[iteration] for iteration in sorted(found)]


def record(path: Path, repo: Path = ROOT) -> int:
    """Add `path`'s committed scorings that its history lacks; how many were added."""
    checkpoint = load_checkpoint(path)
    before = len(checkpoint.test_history)
    known = {entry["iteration"] for entry in checkpoint.test_history}
    if checkpoint.metrics and checkpoint.iteration not in known:  # scored since its last commit
        checkpoint.record_scores(checkpoint.metrics)
        known.add(checkpoint.iteration)
    committed = committed_scorings(path, list(checkpoint.loss_history), repo)
    added = [entry for entry in committed if entry["iteration"] not in known]
    checkpoint.test_history = sorted(checkpoint.test_history + added, key=lambda entry: entry["iteration"])
    if len(checkpoint.test_history) > before:
        save_checkpoint(checkpoint, path)
    return len(checkpoint.test_history) - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.checkpoints or [get_experiment(name).checkpoint_path for name in FEWSHOT_CELLS]
    for path in paths:
        if path.exists() and (added := record(path)):
            print(f"{path}: {added} scorings added, {len(load_checkpoint(path).test_history)} in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
