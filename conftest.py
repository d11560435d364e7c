"""nbval: a failing notebook cell reports its own error first, and the notebook's later cells are skipped.

Cells share one kernel, so after the set-up cell fails every later cell fails with a `NameError` that
only hides the real error. Skipping them, with a reason that points back to the failed cell, leaves
one failure per notebook: the one to read. Its report starts with the exception's last line (nbval's
own first line is "Notebook cell execution failed"), so pytest's summary line says what went wrong.
Unit tests are not affected.
"""
from __future__ import annotations

import re

import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")

_failed_cell: dict[str, str] = {}  # notebook path -> the nbval name of its first failing cell


def _is_notebook_cell(item: pytest.Item) -> bool:
    return item.nodeid.split("::")[0].endswith(".ipynb")


def pytest_runtest_setup(item: pytest.Item) -> None:
    notebook = item.nodeid.split("::")[0]
    if _is_notebook_cell(item) and notebook in _failed_cell:
        pytest.skip(f"not run: {_failed_cell[notebook]} of this notebook failed (its error is reported above)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if _is_notebook_cell(item) and report.failed:
        _failed_cell.setdefault(item.nodeid.split("::")[0], item.nodeid.split("::")[-1])
        traceback = getattr(call.excinfo.value, "inner_traceback", None) if call.excinfo else None
        lines = [line for line in ANSI.sub("", traceback or "").splitlines() if line.strip()]
        if lines and isinstance(report.longrepr, str):
            report.longrepr = f"{lines[-1]}\n\n{report.longrepr}"
    return report
