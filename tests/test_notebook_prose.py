"""No notebook types a result figure into its Markdown (tests/prose_figures.py says what counts and why)."""
import json
from pathlib import Path

import pytest

from prose_figures import typed_figures

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_no_result_figure_is_typed_into_markdown(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    typed = [f"cell {index}: {figure}" for index, cell in enumerate(cells) if cell["cell_type"] == "markdown"
             for figure in typed_figures("".join(cell["source"]))]
    assert not typed, "result figures typed into Markdown (print them from code, or render them from the data " \
                      "with display(Markdown(...))):\n" + "\n".join(typed)


@pytest.mark.parametrize("planted", [
    "MAML reaches 97.3% on 20-way 1-shot after 5 steps.",
    "One step brings the MSE down to 0.412 on K = 5.",
    "The graph path is 4.2x faster than the loop.",
    "Training this model takes 134 s on a laptop.",
    "Second order costs 2.5× the time of first order.",
    "Scoring took 3 minutes.",
])
def test_a_planted_figure_is_caught(planted):
    assert typed_figures(f"Some prose.\n\n{planted} More prose follows.")


@pytest.mark.parametrize("allowed", [
    "The paper reports 98.7 ± 0.4% on 5-way 1-shot (Table 1).",
    "Each task's error is averaged with a 95% confidence interval.",
    "A 20-way guess is right 5% of the time by chance.",
    "Images are 28×28 and each conv is 3×3, with α = 0.01 and meta-batch 25.",
    "The printed accuracy (`print(f'{acc:.1%}')`) is what the code above computed.",
    "Sinusoid amplitudes are drawn from [0.1, 5.0] and the step size α = 0.4.",
])
def test_settings_chance_and_the_papers_figures_are_allowed(allowed):
    assert not typed_figures(allowed), typed_figures(allowed)
