"""Record, in checkpoints written before it was kept, how many tasks each validation score averages.

Validation scored 100 tasks until commit SWITCH, which set `helpers.experiments.VALIDATION_TASKS` to 300. So a
validation point already in a checkpoint's version at SWITCH averages 100 tasks, and one added later averages the
count its run recorded, or VALIDATION_TASKS. A leg that records its own count (`train(validation_tasks=...)`, or a
`validation_tasks` in its settings, as the A/B legs have) needs no history. Points already counted are left as they
are, so a second run changes nothing.

    python tools/record_validation_tasks.py [CHECKPOINT ...]   # default: every checkpoint under data/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.checkpoints import Checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from helpers.experiments import VALIDATION_TASKS  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
from committed_checkpoint import committed_payload  # noqa: E402

SWITCH = "579e02e"  # "n_tasks=100" -> "n_tasks=VALIDATION_TASKS" (300) in helpers/experiments.py
TASKS_BEFORE_SWITCH = 100


def counts(checkpoint: Checkpoint, iterations_before_switch: set[int] | None) -> list[int | None]:
    """The task count of each validation point: recorded, the run's setting, or inferred from the switch (left
    None where the history is unknown: `iterations_before_switch` None)."""
    setting = checkpoint.train_config.get("validation_tasks")
    return [count if count is not None
            else setting if setting is not None
            else None if iterations_before_switch is None
            else TASKS_BEFORE_SWITCH if it in iterations_before_switch
            else VALIDATION_TASKS
            for it, _, count in checkpoint.validation_points()]


def iterations_at(commit: str, path: Path) -> set[int] | None:
    """The validation iterations of `path` as committed at `commit`: none if it was not in the repository then,
    None if it is outside the repository (its history unknown)."""
    if not path.resolve().is_relative_to(ROOT):
        return None
    payload = committed_payload(commit, path, ROOT)
    if payload is None:
        return set()
    return {int(it) for it, _ in payload.get("validation_history", [])}


def record(path: Path) -> bool:
    """Fill in `path`'s missing counts; True if the file changed."""
    checkpoint = load_checkpoint(path)
    filled = counts(checkpoint, iterations_at(SWITCH, path))
    if filled == list(checkpoint.validation_tasks):
        return False
    checkpoint.validation_tasks = filled
    save_checkpoint(checkpoint, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.checkpoints or sorted((ROOT / "data").rglob("*.pt"))
    for path in paths:
        if record(path):
            saved = load_checkpoint(path)
            tally = {n: saved.validation_tasks.count(n) for n in dict.fromkeys(saved.validation_tasks)}
            print(f"{path.relative_to(ROOT) if path.is_absolute() else path}: "
                  + ", ".join(f"{k} points on {n} tasks" for n, k in tally.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
