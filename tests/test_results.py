"""The README's Table 1 rows and the docs' validation and test-score tables are the ones the checkpoints hold:
regenerating them changes nothing."""
import pytest

from helpers import quoted_scores, results
from helpers.checkpoints import Checkpoint


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


def test_docs_tables_match_the_checkpoints():
    assert results.missing_docs_blocks() == []
    for page in sorted(results.DOCS.glob("*.md")):
        text = page.read_text()
        assert results.docs_with_tables(text) == text, \
            f"{page.name}: run `python -m helpers results --update-docs`"


def test_validation_grid_puts_each_score_under_its_iteration():
    points = [(500, 0.5, 100), (1000, 0.625, 100), (5500, 0.75, 300), (6500, 0.875, 300)]
    header, rule, *rows = results.validation_grid(points, 500)
    assert header.split(" | ")[1] == "+500" and header.split(" | ")[-1] == "+5,000 |"
    assert rule.count("|---") == results.VALIDATION_ROW + 1
    first, second = ([cell.strip() for cell in row.strip("|").split("|")] for row in rows)
    assert first[:4] == ["0", "50.0", "62.5", ""] and second[:4] == ["5,000", "75.0", "", "87.5"]
    assert results._task_counts(points) == "100 tasks from 500 to 1,000, 300 tasks from 5,500 to 6,500"
    assert results._task_counts(points[:2]) == "100 tasks"


def test_a_validation_check_off_the_grid_is_refused():
    with pytest.raises(ValueError, match="not positive multiples of 500"):
        results.validation_grid([(500, 0.5, 100), (750, 0.6, 100)], 500)


def test_an_empty_validation_block_is_filled_and_a_foreign_one_left_alone():
    start, end = results._docs_markers("validation", "omniglot_5way_1shot")
    filled = results.docs_with_tables(f"x\n{start}\n{end}\ny\n<!-- validation:other -->\n")
    assert filled.startswith(f"x\n{start}\n`omniglot_5way_1shot`")
    assert filled.endswith(f"{end}\ny\n<!-- validation:other -->\n")


def test_a_scoring_from_before_both_protocols_were_kept_goes_under_its_own_query_count():
    both = {"query_per_class": 1, "test_accuracy_step1": {"mean": 99.1, "ci95": 0.3},
            "test_accuracy_15query_step1": {"mean": 97.5, "ci95": 0.2}}
    fifteen_only = {"query_per_class": 15, "test_accuracy_step1": {"mean": 97.4, "ci95": 0.3}}
    saved = Checkpoint(experiment="x", model_config={}, state_dict={}, iteration=200, train_config={},
                       test_history=[{"iteration": 100, "metrics": fifteen_only, "command": ""},
                                     {"iteration": 200, "metrics": both, "command": ""}])
    assert saved.test_curve(1, 1) == [(200, 99.1, 0.3)]
    assert saved.test_curve(15, 1) == [(100, 97.4, 0.3), (200, 97.5, 0.2)]
    assert saved.test_curve(1, 5) == []


def test_the_test_score_table_lists_every_stored_scoring():
    name = "omniglot_20way_5shot"
    saved = results.load_checkpoint(results.get_experiment(name).checkpoint_path)
    header, rule, *rows = results.test_score_table(name).split("\n\n")[1].splitlines()
    assert header.startswith("| iterations | K query") and len(rows) == len(saved.test_history) >= 12
    assert rows[-1].startswith(f"| {saved.iteration:,} | {saved.metrics['test_accuracy_step5']['mean']:.2f} ± ")


def test_every_score_quoted_beside_an_iteration_is_a_stored_one():
    quoted = {path.name: quoted_scores.find_quotes(path.read_text(), path.name, dataset)
              for path, dataset in quoted_scores.PAGES.items()}
    assert all(quoted.values()), f"a page quotes no score, so this test checks nothing there: {quoted}"
    assert quoted_scores.unmatched_quotes() == []


def test_a_quote_matches_only_a_score_stored_at_its_iteration():
    saved = Checkpoint(experiment="x", model_config={}, state_dict={}, iteration=700, train_config={},
                       validation_history=[(500, 0.9755)],  # quoted 97.6: a tie rounds either way
                       test_history=[{"iteration": 700, "command": "",
                                      "metrics": {"test_tasks": 600, "test_accuracy_step5": {"mean": 97.18,
                                                                                             "ci95": 0.15}}}])
    readme = ("<!-- results:omniglot (x) -->\n| table |\n\n"
              "- **20-way 5-shot** rose (97.6% at 500, 97.18 ± 0.15% at\n  700, 97.18% at 500, 97.19% at 700).\n"
              "- **7-way 3-shot** names no cell: 12.34% at 700.\n")
    quotes = quoted_scores.find_quotes(readme, "README.md")
    assert [(q.cell, q.text) for q in quotes] == [("omniglot_20way_5shot", "97.6% at 500"),
                                                  ("omniglot_20way_5shot", "97.18 ± 0.15% at 700"),
                                                  ("omniglot_20way_5shot", "97.18% at 500"),
                                                  ("omniglot_20way_5shot", "97.19% at 700")]
    assert [quoted_scores.quote_matches(q, saved) for q in quotes] == [True, True, False, False]
    assert quoted_scores.find_quotes(readme.split("\n\n")[1], "README.md") == []  # no table above: no data set
    notes = "* *5-way 1-shot, first order*: 43.50% at 20,000\n"
    assert [q.cell for q in quoted_scores.find_quotes(notes, "x.md", "miniimagenet")] == \
        ["miniimagenet_5way_1shot_first_order"]


def test_a_scoring_names_the_speed_and_machine_of_the_leg_before_it():
    cpu = {"from_iteration": 7050, "ms_per_iteration": 10123.4, "device": "cpu", "threads": 1,
           "machine": "Some CPU, 2 cores"}
    gpu = {**cpu, "from_iteration": 2000, "ms_per_iteration": 170.0, "device": "cuda", "machine": "NVIDIA H200"}
    assert results._leg({"metrics": {"leg": cpu}}) == "from 7,050: 10.12 s an iteration (1 thread, Some CPU, 2 cores)"
    assert results._leg({"metrics": {"leg": gpu}}) == "from 2,000: 170 ms an iteration (NVIDIA H200)"
    assert results._leg({"metrics": {}}) == ""
