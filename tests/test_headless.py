"""helpers trains and evaluates on a machine without the notebook stack (a GPU server: torch, numpy, matplotlib
and tqdm only)."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BLOCK_NOTEBOOK_PACKAGES = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = ("ipywidgets", "IPython", "ipykernel", "ipympl", "jupyter_client", "traitlets")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the headless test)")
    sys.meta_path.insert(0, Block())
""")


def run_headless(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_NOTEBOOK_PACKAGES + textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_the_blocker_blocks():
    run = run_headless("import ipywidgets")
    assert run.returncode != 0 and "blocked by the headless test" in run.stderr


def test_train_and_evaluate_without_ipywidgets_or_ipython(tmp_path):
    checkpoint = tmp_path / "short.pt"
    run = run_headless(f"""
        import sys
        from helpers.__main__ import main
        assert main(["train", "sinusoid_maml", "--iterations", "3", "--no-compile", "--device", "cpu",
                     "--out", {str(checkpoint)!r}]) == 0
        assert main(["evaluate", "sinusoid_maml", "--checkpoint", {str(checkpoint)!r}, "--device", "cpu"]) == 0
        assert not any(name.split(".")[0] in ("ipywidgets", "IPython") for name in sys.modules)
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sinusoid_maml: 3 iterations" in run.stdout
    assert "scored on cpu" in run.stdout
    assert checkpoint.exists()


def test_notebook_modules_still_load_from_the_package():
    import pytest

    pytest.importorskip("ipywidgets")
    import helpers

    assert helpers.widgets.SinusoidAdaptationWidget is not None
    assert callable(helpers.show.show_source)
