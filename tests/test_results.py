"""The README's Table 1 rows are the ones the checkpoints hold: regenerating them changes nothing."""
import pytest

from helpers import results


def test_readme_tables_match_the_checkpoints():
    text = results.README.read_text()
    assert results.readme_with_tables(text) == text, "run `python -m helpers results --update-readme`"
    for dataset in results.TITLES:
        assert results.fewshot_results_table(dataset) in text


def test_every_shipped_row_names_its_iterations_and_tasks():
    table = results.fewshot_results_table("omniglot")
    row = next(line for line in table.splitlines() if line.startswith("| 5-way 1-shot |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "98.7 ± 0.4" and cells[4] == "1" and cells[5].replace(",", "").isdigit()
    assert cells[6] in ("100", "600")


def test_a_readme_without_markers_is_refused():
    with pytest.raises(ValueError, match="no '<!-- results:omniglot"):
        results.readme_with_tables("# a README without the blocks\n")
