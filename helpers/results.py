"""The README's Table 1 rows and the docs' validation and test-score tables, made from the checkpoints so that no
number is typed.

    python -m helpers results                  # print the tables
    python -m helpers results --update-readme  # rewrite them in README.md between their markers
    python -m helpers results --update-docs    # rewrite each cell's validation and test-score tables in docs/*.md
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Callable

from .checkpoints import load_checkpoint, stored_score
from .experiments import FEWSHOT_CELLS, VALIDATION_QUERY, get_experiment
from .quoted_scores import unmatched_quotes

README = Path(__file__).resolve().parent.parent / "README.md"
DOCS = README.parent / "docs"
VALIDATION_ROW = 10  # validation checks per table row: 5,000 iterations at one check every 500
TITLES = {"omniglot": "Omniglot", "miniimagenet": "MiniImagenet"}


def _score(metrics: dict, key: str) -> str:
    return f"{metrics[key]['mean']:.2f} ± {metrics[key]['ci95']:.2f}" if key in metrics else "not scored"


def fewshot_results_table(dataset: str) -> str:
    """A markdown table of the data set's cells: the paper's accuracy beside each shipped checkpoint's."""
    lines = ["| cell | paper (Table 1) | here, K query/class | here, 15 query/class | after steps "
             "| iterations (of 60,000) | test tasks |",
             "|---|---|---|---|---|---|---|"]
    for name, cell in FEWSHOT_CELLS.items():
        if cell.dataset != dataset:
            continue
        label = f"{cell.n_way}-way {cell.k_shot}-shot" + (", first order" if cell.first_order else "")
        decimals = len(str(cell.paper[1]).split(".")[1])  # as printed in the paper: 98.7 ± 0.4, 48.70 ± 1.84
        paper = f"{cell.paper[0]:.{decimals}f} ± {cell.paper[1]:.{decimals}f}"
        path = get_experiment(name).checkpoint_path
        if not path.exists():
            lines.append(f"| {label} | {paper} | not trained yet | | | | |")
            continue
        saved = load_checkpoint(path)
        metrics, steps = saved.metrics, cell.test_steps
        ours = metrics.get(f"test_accuracy_step{steps}")
        below = ours is not None and ours["mean"] + ours["ci95"] < cell.paper[0] - cell.paper[1]
        lines.append(f"| {label} | {paper} | {_score(metrics, f'test_accuracy_step{steps}')}"
                     f"{' (below the paper)' if below else ''} | "
                     f"{_score(metrics, f'test_accuracy_15query_step{steps}')} | {steps} | "
                     f"{saved.iteration:,} | {metrics.get('test_tasks', '')} |")
    return "\n".join(lines)


def _markers(dataset: str) -> tuple[str, str]:
    return f"<!-- results:{dataset} (python -m helpers results --update-readme) -->", f"<!-- /results:{dataset} -->"


def _fill_blocks(text: str, start: str, end: str, make_body: Callable[[], str]) -> tuple[str, int]:
    """`text` with whatever lies between each `start` line and its `end` marker (empty too) replaced by
    `make_body()`, made only if a block is there, and how many blocks there were."""
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.S)
    return pattern.subn(lambda _: f"{start}\n{make_body()}\n{end}", text)


def readme_with_tables(text: str) -> str:
    """`text` with every data set's table replaced between its markers (a missing marker is an error)."""
    for dataset in TITLES:
        start, end = _markers(dataset)
        text, found = _fill_blocks(text, start, end, lambda: fewshot_results_table(dataset))
        if not found:
            raise ValueError(f"README.md has no '{start}' ... '{end}' block to hold the {TITLES[dataset]} table")
    return text


def _task_counts(points: list[tuple[int, float, int | None]]) -> str:
    """Where the number of tasks behind each score changed, in words: a new count is not a new model."""
    runs: list[list] = []  # [count, first iteration, last iteration]
    for iteration, _, count in points:
        if runs and runs[-1][0] == count:
            runs[-1][2] = iteration
        else:
            runs.append([count, iteration, iteration])
    words = [f"{'an unrecorded number of' if count is None else count} tasks"
             + ("" if len(runs) == 1 else f" from {first:,} to {last:,}") for count, first, last in runs]
    return ", ".join(words)


def validation_grid(points: list[tuple[int, float, int | None]], every: int) -> list[str]:
    """Markdown rows of validation scores (%), `VALIDATION_ROW` checks `every` iterations apart to a row, so that a
    long history stays a short table; a check off that grid is an error rather than a misplaced number."""
    off_grid = [iteration for iteration, _, _ in points if iteration <= 0 or iteration % every]
    if off_grid:
        raise ValueError(f"validation at iterations {off_grid}, not positive multiples of {every}")
    span, rows = every * VALIDATION_ROW, {}
    for iteration, score, _ in points:
        start = (iteration - 1) // span * span
        rows.setdefault(start, [""] * VALIDATION_ROW)[(iteration - start) // every - 1] = f"{100 * score:.1f}"
    return (["| iterations | " + " | ".join(f"+{every * i:,}" for i in range(1, VALIDATION_ROW + 1)) + " |",
             "|---" * (VALIDATION_ROW + 1) + "|"]
            + [f"| {start:,} | " + " | ".join(cells) + " |" for start, cells in sorted(rows.items())])


def validation_table(name: str) -> str:
    """A cell's stored validation accuracy, with what each score averages, as the docs show it."""
    experiment, cell = get_experiment(name), FEWSHOT_CELLS[name]
    if not experiment.checkpoint_path.exists():
        return f"`{name}`: not trained yet."
    saved = load_checkpoint(experiment.checkpoint_path)
    points = saved.validation_points()
    if not points:
        return f"`{name}`: no validation scores stored ({saved.iteration:,} iterations)."
    steps = f"{cell.n_inner_steps} step{'s' if cell.n_inner_steps > 1 else ''}"
    caption = (f"`{name}` at {saved.iteration:,} iterations: validation accuracy (%), {VALIDATION_QUERY} query "
               f"images per class after {steps}, on {_task_counts(points)}.")
    return "\n".join(textwrap.wrap(caption, 115) + [""] + validation_grid(points, experiment.validate_every))


def _leg(entry: dict) -> str:
    """How the training that led to a scoring ran ('' for scorings from before legs were recorded)."""
    leg = entry["metrics"].get("leg")
    if leg is None:
        return ""
    ms, threads = leg["ms_per_iteration"], leg["threads"]
    speed = f"{ms / 1e3:.2f} s" if ms >= 1e3 else f"{ms:.0f} ms"
    where = f"{threads} thread{'s' if threads > 1 else ''}, {leg['machine']}" if leg["device"] == "cpu" \
        else leg["machine"]
    return f"from {leg['from_iteration']:,}: {speed} an iteration ({where})"


def test_score_table(name: str) -> str:
    """Every stored scoring of a cell's checkpoint: how its test accuracy moved with the iterations."""
    experiment, cell = get_experiment(name), FEWSHOT_CELLS[name]
    if not experiment.checkpoint_path.exists():
        return f"`{name}`: not trained yet."
    saved = load_checkpoint(experiment.checkpoint_path)
    if not saved.test_history:
        return f"`{name}`: no test scores stored ({saved.iteration:,} iterations)."
    steps, k = cell.test_steps, cell.k_shot
    caption = (f"`{name}`: test accuracy (%) after {steps} step{'s' if steps > 1 else ''} at each scoring of its "
               f"checkpoint, with K = {k} and with 15 query images per class, and the speed of the training leg "
               f"that ended there (validation excluded; not recorded for the older scorings).")
    rows = ["| iterations | K query images per class | 15 query images per class | test tasks | the leg before it |",
            "|---|---|---|---|---|"]
    for entry in saved.test_history:
        scores = [stored_score(entry["metrics"], query, steps) for query in (k, 15)]
        rows.append(f"| {entry['iteration']:,} | "
                    + " | ".join("not scored" if s is None else f"{s['mean']:.2f} ± {s['ci95']:.2f}" for s in scores)
                    + f" | {entry['metrics'].get('test_tasks', '')} | {_leg(entry)} |")
    return "\n".join(textwrap.wrap(caption, 115) + [""] + rows)


DOCS_TABLES = {"validation": validation_table, "test-scores": test_score_table}  # each cell has one of each


def _docs_markers(kind: str, name: str) -> tuple[str, str]:
    return f"<!-- {kind}:{name} (python -m helpers results --update-docs) -->", f"<!-- /{kind}:{name} -->"


def docs_with_tables(text: str) -> str:
    """`text` with each cell's validation and test-score blocks, wherever they are, replaced by the checkpoint's
    current tables."""
    for kind, table in DOCS_TABLES.items():
        for name in FEWSHOT_CELLS:
            text, _ = _fill_blocks(text, *_docs_markers(kind, name), lambda: table(name))
    return text


def missing_docs_blocks(docs: Path = DOCS) -> list[str]:
    """'kind:cell' for each table that no page in `docs` holds a block for."""
    pages = "".join(page.read_text() for page in sorted(docs.glob("*.md")))
    return [f"{kind}:{name}" for kind in DOCS_TABLES for name in FEWSHOT_CELLS
            if _docs_markers(kind, name)[0] not in pages]


def main(update_readme: bool = False, update_docs: bool = False) -> int:
    if update_readme:
        README.write_text(readme_with_tables(README.read_text()))
        print(f"updated the results tables in {README}")
    if update_docs:
        for page in sorted(DOCS.glob("*.md")):
            text = page.read_text()
            if (new := docs_with_tables(text)) != text:
                page.write_text(new)
                print(f"updated the tables in {page}")
        if missing := missing_docs_blocks():
            print(f"no page in {DOCS} holds a block for: {', '.join(missing)}")
            return 1
    if update_readme or update_docs:
        if wrong := unmatched_quotes():  # prose written by hand that the new scores left behind
            print("\n".join(["scores quoted in prose that no checkpoint stores:"] + wrong))
            return 1
        return 0
    for dataset, title in TITLES.items():
        print(f"{title}\n\n{fewshot_results_table(dataset)}\n")
    return 0
