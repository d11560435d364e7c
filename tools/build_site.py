"""`make site`: execute every notebook and write a static site that reads without a kernel.

One HTML page per notebook (lessons and their solutions) and an index page, in a git-ignored folder.
Built with nbconvert rather than Jupyter Book: nbconvert is already pinned beside JupyterLab and renders
the same lab look, while the three things a site adds here (an index, links between pages, widgets shown
as their last state) fit in this one file without a Sphinx project to maintain.

Widgets have no kernel on a static page, so each widget output is replaced by what it last showed: its
plot, readout and the values of its controls, read from the widget state that execution stores in the
notebook (and, for ipympl figures, whose pixels never enter that state, a PNG of the figure taken from
the kernel before it shuts down). Nothing is fetched from the internet: no CDN scripts, and display
math is rendered to SVG by matplotlib at build time.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
TEMPLATE = Path(__file__).resolve().parent / "site.html.j2"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SNAPSHOT_MARK = "SITE-FIGURE-SNAPSHOTS "
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOTE = "A snapshot of this widget as the notebook left it; open the notebook in JupyterLab to use it."

# Run in the kernel after the notebook's own cells: ipympl canvases keep their pixels in the kernel only.
SNAPSHOT_CODE = f"""
import base64 as _b64, io as _io, json as _json
from ipywidgets.widgets.widget import _instances as _widgets
def _site_snapshots():
    shots = {{}}
    for model_id, widget in list(_widgets.items()):
        if type(widget).__name__ == "Canvas" and getattr(widget, "figure", None) is not None:
            buffer = _io.BytesIO()
            widget.figure.savefig(buffer, format="png")
            shots[model_id] = _b64.b64encode(buffer.getvalue()).decode()
    return shots
print({SNAPSHOT_MARK!r} + _json.dumps(_site_snapshots()))
"""


def notebook_paths() -> list[Path]:
    """Lessons and solutions in reading order: 01, 01 solutions, 02, ..."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def execute(path: Path, timeout_s: int) -> tuple[nbformat.NotebookNode, dict[str, str]]:
    """Run the notebook top to bottom in its own folder; return it with widget state, and ipympl snapshots."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(SNAPSHOT_CODE))
    client = NotebookClient(notebook, timeout=timeout_s, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    snapshot_cell = notebook.cells.pop()
    text = "".join(output.get("text", "") for output in snapshot_cell.outputs if output.output_type == "stream")
    snapshots = json.loads(text.split(SNAPSHOT_MARK, 1)[1]) if SNAPSHOT_MARK in text else {}
    return notebook, snapshots


class StaticWidgets:
    """Turns a widget model, from the stored widget state, into the HTML of what it last showed."""

    def __init__(self, notebook: nbformat.NotebookNode, snapshots: dict[str, str]) -> None:
        self.models = dict(notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {}))
        for model in self.models.values():  # binary traits (an Image's PNG) are stored base64 beside the state
            for buffer in model.get("buffers", []):
                model["state"][buffer["path"][0]] = buffer["data"]
        self.snapshots = snapshots

    def state(self, reference: str) -> dict:
        return self.models.get(reference.removeprefix("IPY_MODEL_"), {}).get("state", {})

    def hidden(self, state: dict) -> bool:
        return self.state(state.get("layout", "")).get("display") == "none"

    def render(self, model_id: str) -> str:
        model = self.models.get(model_id.removeprefix("IPY_MODEL_"))
        if model is None:
            raise ValueError(f"widget {model_id} has no stored state: was the notebook executed with widget state?")
        name, state = model["model_name"], model["state"]
        if self.hidden(state):
            return ""
        label = html.escape(state.get("description", ""))
        if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
            kind = "static-column" if name == "VBoxModel" else "static-row"
            return f'<div class="{kind}">{"".join(self.render(child) for child in state.get("children", []))}</div>'
        if name == "ImageModel":
            return f'<img class="static-widget-image" alt="{label}" src="data:image/{state.get("format", "png")};base64,{state.get("value", "")}">'
        if name in ("HTMLModel", "HTMLMathModel"):
            return f'<div class="static-html">{state.get("value", "")}</div>'
        if name == "LabelModel":
            return f'<span>{html.escape(str(state.get("value", "")))}</span>'
        if name == "CheckboxModel":
            return f'<span class="static-control">{"☑" if state.get("value") else "☐"} {label}</span>'
        if name in ("ToggleButtonsModel", "DropdownModel", "RadioButtonsModel", "SelectModel"):
            options, index = state.get("_options_labels", []), state.get("index")
            chosen = options[index] if isinstance(index, int) and index < len(options) else ""
            return f'<span class="static-control"><b>{label}</b> {html.escape(chosen)}</span>'
        if name == "ButtonModel":
            return ""  # a button has no state to show; its effect is in the plot
        if name == "OutputModel":
            return "".join(self.output(o) for o in state.get("outputs", []))
        if name == "MPLCanvasModel":
            png = self.snapshots.get(model_id.removeprefix("IPY_MODEL_"), "")
            return f'<img class="static-widget-image" alt="figure" src="data:image/png;base64,{png}">' if png else ""
        if "value" in state:  # sliders, text boxes, progress bars: the value they were left at
            value = state["value"]
            value = " – ".join(map(str, value)) if isinstance(value, list) else str(value)
            return f'<span class="static-control"><b>{label}</b> {html.escape(value)}</span>'
        return ""

    @staticmethod
    def output(output: dict) -> str:
        """An Output widget's captured output (e.g. a callback's traceback) as plain HTML."""
        if output.get("output_type") == "stream":
            return f"<pre>{html.escape(output.get('text', ''))}</pre>"
        if output.get("output_type") == "error":
            return f"<pre class=\"static-error\">{html.escape(chr(10).join(output.get('traceback', [])))}</pre>"
        data = output.get("data", {})
        if "image/png" in data:
            return f'<img src="data:image/png;base64,{data["image/png"]}">'
        if "text/html" in data:
            return "".join(data["text/html"])
        return f"<pre>{html.escape(''.join(data.get('text/plain', '')))}</pre>"

    def replace_views(self, notebook: nbformat.NotebookNode) -> int:
        """Swap every widget view in the outputs for its static HTML; returns how many were swapped."""
        count = 0
        for cell in notebook.cells:
            for output in cell.get("outputs", []):
                view = output.get("data", {}).get(WIDGET_VIEW)
                if view:
                    body = self.render(view["model_id"])
                    output["data"] = {"text/html": f'<div class="static-widget"><div class="static-widget-note">{NOTE}'
                                                   f'</div>{body}</div>'}
                    count += 1
        notebook.metadata.pop("widgets", None)  # nothing left for a widget manager (and its CDN script) to do
        return count


def tex_to_svg(tex: str) -> str | None:
    """Display math as an inline SVG image (matplotlib's mathtext), so no MathJax has to be fetched."""
    from matplotlib.figure import Figure
    figure = Figure()
    figure.text(0, 0, f"${tex}$", fontsize=16)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.05, transparent=True)
    except ValueError:  # mathtext does not know every LaTeX command; the TeX source is shown instead
        return None
    return base64.b64encode(buffer.getvalue()).decode()


def render_math(notebook: nbformat.NotebookNode) -> None:
    def image(match: re.Match) -> str:
        tex = " ".join(match.group(1).split())
        svg = tex_to_svg(tex)
        alt = html.escape(tex, quote=True)
        return f'<img class="math" alt="{alt}" src="data:image/svg+xml;base64,{svg}">' if svg else f"<code>{alt}</code>"
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\$\$(.+?)\$\$", image, cell.source, flags=re.DOTALL)


def title_of(notebook: nbformat.NotebookNode, fallback: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^# (.+)$", cell.source, flags=re.MULTILINE)
            if match:
                return match.group(1).strip()
    return fallback


def summary_of(notebook: nbformat.NotebookNode) -> str:
    """The first paragraph after the title: what the page is about."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            paragraphs = [p.strip() for p in cell.source.split("\n\n") if p.strip() and not p.startswith("#")]
            return " ".join(paragraphs[0].split()) if paragraphs else ""
    return ""


def pair_of(path: Path) -> Path | None:
    """The lesson for a solutions page, the solutions for a lesson (if they exist)."""
    other = (path.with_name(path.stem.removesuffix("_solutions") + ".ipynb") if path.stem.endswith("_solutions")
             else path.with_name(path.stem + "_solutions.ipynb"))
    return other if other.exists() else None


def nav(path: Path) -> str:
    links = ['<a href="index.html">All notebooks</a>']
    other = pair_of(path)
    if other is not None:
        text = "The lesson" if path.stem.endswith("_solutions") else "Solutions to the exercises"
        links.append(f'<a href="{other.stem}.html">{text}</a>')
    return f'<nav class="site-nav">{"".join(links)}</nav>'


def to_html(notebook: nbformat.NotebookNode, path: Path, title: str) -> str:
    exporter = HTMLExporter(template_file=str(TEMPLATE))
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    body = re.sub(r'href="(?!https?:|#|mailto:)([^"#]+)\.ipynb', r'href="\1.html', body)  # links between notebooks
    return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav(path), body, count=1)


def index_page(pages: list[tuple[Path, str, str]]) -> str:
    items = []
    for path, title, summary in pages:
        if path.stem.endswith("_solutions"):
            continue
        other = pair_of(path)
        solutions = f' · <a href="{other.stem}.html">solutions</a>' if other else ""
        items.append(f'<li><a href="{path.stem}.html">{html.escape(title)}</a>{solutions}'
                     f'<p>{html.escape(summary)}</p></li>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MAML, reproduced and explained</title>
<style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 52em; margin: 2em auto; padding: 0 1em; }}
li {{ margin-bottom: 1em; }} li p {{ margin: 0.2em 0; color: #444; }}</style></head>
<body><h1>MAML, reproduced and explained</h1>
<p>The notebooks of this project, executed, with every figure and each widget as the notebook left it.
Each lesson ends with exercises; its solutions page answers them.</p>
<ul>{"".join(items)}</ul>
<p><small>Built by <code>make site</code> on {time.strftime("%Y-%m-%d")}.</small></p></body></html>
"""


def build(out: Path, only: list[str], timeout_s: int) -> int:
    """Build every page; a notebook that fails is reported and skipped, and the build then fails (exit code 1)."""
    out.mkdir(parents=True, exist_ok=True)
    pages, failed = [], []
    for path in notebook_paths():
        if only and not any(word in path.name for word in only):
            continue
        start = time.perf_counter()
        try:
            notebook, snapshots = execute(path, timeout_s)
        except CellExecutionError as error:
            lines = [line for line in ANSI.sub("", str(error)).splitlines() if line.strip()]
            failed.append(f"{path.name}: {lines[-1] if lines else error}")
            print(f"{path.name}: FAILED, no page written\n{ANSI.sub('', str(error))[-3000:]}", flush=True)
            (out / f"{path.stem}.html").unlink(missing_ok=True)
            continue
        widgets = StaticWidgets(notebook, snapshots).replace_views(notebook)
        render_math(notebook)
        title = title_of(notebook, path.stem)
        (out / f"{path.stem}.html").write_text(to_html(notebook, path, title), encoding="utf-8")
        pages.append((path, title, summary_of(notebook)))
        print(f"{path.name}: {time.perf_counter() - start:.0f} s, {widgets} widget(s) made static", flush=True)
    if not only:
        (out / "index.html").write_text(index_page(pages), encoding="utf-8")
    print(f"site written to {out}/ ({len(pages)} pages)")
    if failed:
        print("these notebooks failed, so the site is incomplete:\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "site")
    parser.add_argument("--only", nargs="*", default=[], help="build only notebooks whose name contains one of these")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may take")
    args = parser.parse_args(argv)
    return build(args.out, args.only, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
