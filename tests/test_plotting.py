"""A validation curve says how many tasks each of its points averages; test scores carry their intervals."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers import plotting  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def markers(ax):
    """{legend label: (x, y, filled)} of the marker-only lines."""
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()),
                               line.get_markerfacecolor() != "white")
            for line in ax.get_lines() if line.get_linestyle() == "None"}


def test_points_are_grouped_by_task_count_and_only_the_filled_count_is_filled(ax):
    points = [(500, 0.40, 100), (1000, 0.42, 100), (1500, 0.41, 300), (2000, 0.43, None)]
    plotting.plot_validation(points, ax=ax, scale=100, x_scale=1000, label="val")
    drawn = markers(ax)
    assert drawn == {"val, 100 tasks": ([0.5, 1.0], [40.0, 42.0], False),
                     "val, 300 tasks": ([1.5], [41.0], True),
                     "val, tasks not recorded": ([2.0], [43.0], False)}
    line = next(line for line in ax.get_lines() if line.get_linestyle() == "-")
    assert list(line.get_xdata()) == [0.5, 1.0, 1.5, 2.0]  # one curve through every point, whatever its count


def test_a_shared_filled_count_keeps_a_curve_of_fewer_tasks_hollow(ax):
    plotting.plot_validation([(500, 0.4, 100), (1000, 0.5, 100)], ax=ax, label="a", filled=300)
    plotting.plot_validation([(500, 0.4, 100), (1000, 0.5, 100)], ax=ax, label="b")
    drawn = markers(ax)
    assert drawn["a, 100 tasks"][2] is False and drawn["b, 100 tasks"][2] is True


def test_test_scores_are_drawn_at_their_iterations_with_their_intervals(ax):
    plotting.plot_test_scores([(1000, 90.0, 0.5), (3000, 95.0, 0.25)], ax=ax, x_scale=1000, offset=100, label="t")
    (bars,) = ax.containers
    assert list(bars.lines[0].get_xdata()) == [1.1, 3.1] and list(bars.lines[0].get_ydata()) == [90.0, 95.0]
    segments = bars.lines[2][0].get_segments()
    assert [(low[1], high[1]) for low, high in segments] == [(89.5, 90.5), (94.75, 95.25)]
    assert ax.get_legend_handles_labels()[1] == ["t"]
    plotting.plot_test_scores([], ax=ax)  # a cell never scored draws nothing
    assert len(ax.containers) == 1
