"""A checkpoint file as the repository held it at a commit, for the tools that fill in what older checkpoints lack."""
from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import torch


def _relative(path: Path, repo: Path) -> str:
    """`path` as git names it inside `repo`."""
    return path.resolve().relative_to(repo.resolve()).as_posix()


def committed_payload(commit: str, path: Path, repo: Path) -> dict[str, Any] | None:
    """The checkpoint at `path` (inside `repo`) as committed at `commit`; None if the file was not in that commit."""
    shown = subprocess.run(["git", "show", f"{commit}:{_relative(path, repo)}"], cwd=repo, capture_output=True)
    if shown.returncode != 0:
        return None
    return torch.load(io.BytesIO(shown.stdout), map_location="cpu", weights_only=True)


def commits_of(path: Path, repo: Path) -> list[str]:
    """The commits that changed `path`, newest first."""
    log = subprocess.run(["git", "log", "--format=%H", "--", _relative(path, repo)], cwd=repo, capture_output=True,
                         text=True, check=True)
    return log.stdout.split()
