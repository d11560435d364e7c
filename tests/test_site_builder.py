"""tools/build_site.py without a kernel: widget views become what they last showed, math becomes SVG, links .html."""
import base64
import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import build_site  # noqa: E402

PNG = base64.b64encode(b"\x89PNG fake bytes").decode()


def model(name: str, **state) -> dict:
    return {"model_name": name, "model_module": "@jupyter-widgets/controls", "state": state}


@pytest.fixture
def notebook() -> nbformat.NotebookNode:
    """A notebook as nbclient leaves it: one widget view in an output, the widget state in the metadata."""
    nb = nbformat.v4.new_notebook()
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    nb.cells = [nbformat.v4.new_code_cell("explorer", outputs=[
        nbformat.v4.new_output("display_data", data={build_site.WIDGET_VIEW: view, "text/plain": "VBox(...)"})])]
    image = model("ImageModel", format="png", layout="IPY_MODEL_shown")
    image["buffers"] = [{"path": ["value"], "data": PNG, "encoding": "base64"}]
    nb.metadata["widgets"] = {build_site.WIDGET_STATE: {"state": {
        "box": model("VBoxModel", children=["IPY_MODEL_k", "IPY_MODEL_hidden", "IPY_MODEL_model", "IPY_MODEL_readout",
                                            "IPY_MODEL_image", "IPY_MODEL_button", "IPY_MODEL_canvas"]),
        "k": model("IntSliderModel", description="K (shots)", value=7),
        "hidden": model("CheckboxModel", description="never shown", value=True, layout="IPY_MODEL_gone"),
        "gone": model("LayoutModel", display="none"),
        "shown": model("LayoutModel"),
        "model": model("ToggleButtonsModel", description="model", _options_labels=["5-way", "20-way"], index=1),
        "readout": model("HTMLModel", value="K = 7, steps = 3"),
        "image": image,
        "button": model("ButtonModel", description="new task"),
        "canvas": model("MPLCanvasModel"),
    }}}
    return nb


def test_widget_views_become_their_last_state(notebook):
    assert build_site.StaticWidgets(notebook, {"canvas": PNG}).replace_views(notebook) == 1
    output = notebook.cells[0].outputs[0]
    assert set(output["data"]) == {"text/html"}  # no widget view left for a widget manager to load
    page = output["data"]["text/html"]
    assert "K (shots)</b> 7" in page and "model</b> 20-way" in page and "K = 7, steps = 3" in page
    assert page.count(f"data:image/png;base64,{PNG}") == 2  # the Image widget and the ipympl snapshot
    assert "never shown" not in page and "new task" not in page
    assert "widgets" not in notebook.metadata


def test_a_view_without_state_fails_loudly(notebook):
    notebook.metadata["widgets"][build_site.WIDGET_STATE]["state"].pop("box")
    with pytest.raises(ValueError, match="no stored state"):
        build_site.StaticWidgets(notebook, {}).replace_views(notebook)


def test_display_math_is_drawn_at_build_time():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Inner loop:\n\n$$\\theta'_i = \\theta - \\alpha \\nabla_\\theta L$$\n")]
    build_site.render_math(nb)
    assert '<img class="math"' in nb.cells[0].source and "data:image/svg+xml;base64," in nb.cells[0].source


def test_pages_link_to_pages_and_back_to_the_index():
    lesson = build_site.NOTEBOOKS / "01_sinusoid_maml.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Test\n\nSee [the solutions](01_sinusoid_maml_solutions.ipynb).")]
    page = build_site.to_html(nb, lesson, "01 · Test")
    assert 'href="01_sinusoid_maml_solutions.html"' in page and 'href="index.html"' in page
    assert "cdnjs" not in page and "require.min.js" not in page  # nothing to fetch from the internet
