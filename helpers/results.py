"""The README's Table 1 rows, made from the checkpoints' stored scores so that no number is typed by hand.

    python -m helpers results                  # print the tables
    python -m helpers results --update-readme  # rewrite them in README.md between their markers
"""
from __future__ import annotations

import re
from pathlib import Path

from .checkpoints import load_checkpoint
from .experiments import FEWSHOT_CELLS, get_experiment

README = Path(__file__).resolve().parent.parent / "README.md"
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


def readme_with_tables(text: str) -> str:
    """`text` with every data set's table replaced between its markers (a missing marker is an error)."""
    for dataset in TITLES:
        start, end = _markers(dataset)
        pattern = re.compile(re.escape(start) + r"\n.*?\n" + re.escape(end), re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md has no '{start}' ... '{end}' block to hold the {TITLES[dataset]} table")
        text = pattern.sub(lambda _: f"{start}\n{fewshot_results_table(dataset)}\n{end}", text)
    return text


def main(update_readme: bool = False) -> int:
    if update_readme:
        README.write_text(readme_with_tables(README.read_text()))
        print(f"updated the results tables in {README}")
        return 0
    for dataset, title in TITLES.items():
        print(f"{title}\n\n{fewshot_results_table(dataset)}\n")
    return 0
