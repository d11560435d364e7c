"""Measured cost of a meta-iteration: second order keeps every inner step's graph, first order does not."""
import pytest

from helpers.cost import meta_iteration_cost, measure_here, steps_cost_table
from helpers.device import machine_name
from test_omniglot import needs_data


@needs_data
def test_second_order_holds_more_memory_than_first_order_and_both_are_measured():
    """Omniglot 20-way 1-shot, 2 tasks, each in a fresh process. The cell loops over tasks, freeing each task's graph,
    so second order holds one task's inner steps more than first order: 10 steps make that clear of the allocator's
    noise in the first-order peak (28-49 MiB seen; second order with 10 steps 99-103 MiB)."""
    second = meta_iteration_cost("omniglot_20way_1shot", meta_batch_size=2, n_inner_steps=10, threads=1)
    first = meta_iteration_cost("omniglot_20way_1shot", meta_batch_size=2, n_inner_steps=10, first_order=True,
                                threads=1)
    assert second.meta_batch_size == first.meta_batch_size == 2
    assert 0 < first.seconds < 60 and 0 < second.seconds < 60
    assert second.peak_mib > 1.5 * first.peak_mib > 0, (second, first)


def test_only_few_shot_cells_and_the_sinusoid_are_measured():
    with pytest.raises(ValueError, match="'sinusoid_pretrained' is neither a few-shot cell nor sinusoid_maml"):
        measure_here("sinusoid_pretrained")


def test_sinusoid_steps_cost_more_time_in_second_order():
    """Notebook 05's cost table, for the sinusoid only: 10 second-order steps take longer than one."""
    table = steps_cost_table(("sinusoid_maml",), steps=(1, 10), progress=False)
    seconds = {(row["first_order"], row["inner_steps"]): row["seconds"] for row in table["rows"]}
    assert len(table["rows"]) == 4 and all(row["meta_batch_size"] == 25 for row in table["rows"])
    assert seconds[False, 10] > 2 * seconds[False, 1], seconds
    assert table["machine"] == machine_name() and "cores" in table["machine"]  # timings name where they were taken
