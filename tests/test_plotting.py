"""A validation curve says how many tasks each of its points averages."""
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
