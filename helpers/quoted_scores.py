"""Scores that prose quotes beside an iteration ("97.10% at 6,450"), checked against the checkpoint that stored
them, so that a paragraph written by hand cannot drift from the numbers it tells.

A quote belongs to the cell that its bullet names (``- **20-way 5-shot**``, ``* *5-way 1-shot, first order*``);
the data set is the page's (docs/omniglot_notes.md) or, in the README, the one of the nearest results table above.
It matches when any score stored at that iteration, validation or test (any query count, any step count), rounds
to it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .checkpoints import Checkpoint, load_checkpoint
from .experiments import FEWSHOT_CELLS, get_experiment

BULLET = re.compile(r"^[-*] \*{1,2}(\d+)-way (\d+)-shot(, (?:first|second) order)?\*{1,2}")
QUOTE = re.compile(r"(\d{1,3}\.\d{1,2})(?: ± \d+\.\d+)?% at (\d{1,3}(?:,\d{3})*|\d+)\b")
README_DATASET = re.compile(r"<!-- results:(\w+) ")
ROOT = Path(__file__).resolve().parent.parent
PAGES: dict[Path, str | None] = {ROOT / "README.md": None,  # page: its data set (None: the README's rule)
                                 ROOT / "docs" / "omniglot_notes.md": "omniglot",
                                 ROOT / "docs" / "miniimagenet_notes.md": "miniimagenet"}


@dataclass(frozen=True)
class Quote:
    page: str
    cell: str
    text: str  # as written, e.g. "97.10% at 6,450"
    score: str  # "97.10"
    iteration: int


def _bullets(text: str) -> Iterator[tuple[int, str]]:
    """(offset, the bullet with its indented continuation lines joined by spaces) for each top-level bullet."""
    lines, offset = text.splitlines(keepends=True), 0
    for i, line in enumerate(lines):
        if line.startswith(("- ", "* ")):
            body = [line.strip()]
            for more in lines[i + 1:]:
                if not more.startswith("  ") or not more.strip():
                    break
                body.append(more.strip())
            yield offset, " ".join(body)
        offset += len(line)


def _cell(dataset: str, n_way: str, k_shot: str, order: str | None) -> str | None:
    first_order = bool(order) and "first" in order
    for name, cell in FEWSHOT_CELLS.items():
        if (cell.dataset, cell.n_way, cell.k_shot, cell.first_order) == (dataset, int(n_way), int(k_shot),
                                                                          first_order):
            return name
    return None


def find_quotes(text: str, page: str, dataset: str | None = None) -> list[Quote]:
    """Each score quoted beside an iteration in a bullet that names a cell; `dataset` None: the README's rule."""
    quotes = []
    for offset, bullet in _bullets(text):
        label = BULLET.match(bullet)
        if not label:
            continue
        if dataset is None:
            above = README_DATASET.findall(text[:offset])
            if not above:
                continue
            name = _cell(above[-1], *label.groups())
        else:
            name = _cell(dataset, *label.groups())
        if name is None:
            continue
        quotes += [Quote(page, name, match.group(0), match.group(1), int(match.group(2).replace(",", "")))
                   for match in QUOTE.finditer(bullet)]
    return quotes


def stored_at(saved: Checkpoint, iteration: int) -> list[float]:
    """Every score (%) the checkpoint holds for `iteration`: validation checks and each test scoring's accuracies."""
    scores = [100 * score for it, score, _ in saved.validation_points() if it == iteration]
    for entry in saved.test_history:
        if entry["iteration"] == iteration:
            scores += [value["mean"] for key, value in entry["metrics"].items() if key.startswith("test_accuracy")]
    return scores


def quote_matches(quote: Quote, saved: Checkpoint) -> bool:
    """Whether a stored score rounds to the quote, either way at a tie (97.55 may be quoted 97.5 or 97.6)."""
    half_unit = 0.5 * 10.0 ** -len(quote.score.split(".")[1])
    return any(abs(score - float(quote.score)) <= half_unit + 1e-9 for score in stored_at(saved, quote.iteration))


def unmatched_quotes(pages: dict[Path, str | None] = PAGES) -> list[str]:
    """'page: cell: quote' for each quote on `pages` that no stored score matches."""
    checkpoints: dict[str, Checkpoint] = {}
    wrong = []
    for path, dataset in pages.items():
        for quote in find_quotes(path.read_text(), path.name, dataset):
            if quote.cell not in checkpoints:
                checkpoints[quote.cell] = load_checkpoint(get_experiment(quote.cell).checkpoint_path)
            if not quote_matches(quote, checkpoints[quote.cell]):
                wrong.append(f"{quote.page}: {quote.cell}: {quote.text!r} is no stored score at that iteration")
    return wrong
