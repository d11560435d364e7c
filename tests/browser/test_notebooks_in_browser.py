"""The notebooks' widgets, used the way a person uses them: in JupyterLab and Voilà, in headless Chromium.

nbval already runs every cell in a kernel; these tests prove what it cannot: that the widgets render
in a real browser, and that clicking a slider and pressing an arrow key, pressing a button, ticking a
box or clicking on the figure reaches the kernel and changes what is on screen. Run them with
`make test-browser`; they need Debian's chromium at /usr/bin/chromium.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pinned in requirements.txt)")
from playwright.sync_api import Locator, Page, expect  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

if TYPE_CHECKING:
    from conftest import Server

pytestmark = pytest.mark.browser

KERNEL_START_TIMEOUT_MS = 60_000
RUN_ALL_TIMEOUT_MS = 300_000  # a bound, not the expected time: notebook 02 runs in about 60 s on 2 idle cores
WIDGET_UPDATE_TIMEOUT_MS = 30_000
# What a Python error looks like in an output, but not a warning or a progress bar on stderr.
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w+(Error|Exception): ", re.MULTILINE)
# True once Run All has finished: no cell waits or runs ([*]), and the first code cell has run.
ALL_CELLS_FINISHED = """() => {
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
        .map(prompt => prompt.textContent);
    return prompts.length > 0 && !prompts.some(text => text.includes('*')) && /\\d/.test(prompts[0]);
}"""
# How many pixels of the plot have the colour of a faint (alpha 0.3) tab:blue line on white: (188, 214, 232).
FAINT_BLUE_PIXELS = """async image => {
    const bitmap = await createImageBitmap(await (await fetch(image.src)).blob());
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext('2d');
    context.drawImage(bitmap, 0, 0);
    const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
    let count = 0;
    for (let i = 0; i < pixels.length; i += 4) {
        if (Math.abs(pixels[i] - 188) < 14 && Math.abs(pixels[i + 1] - 214) < 14 && Math.abs(pixels[i + 2] - 232) < 14) count++;
    }
    return count;
}"""
IMAGE_SHA256 = """async image => {
    const bytes = await (await fetch(image.src)).arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return Array.from(digest, byte => byte.toString(16).padStart(2, '0')).join('');
}"""


@dataclass
class Widget:
    """One widget's output, with the parts a person looks at: readout, plot and error area."""

    root: Locator

    @property
    def readout(self) -> Locator:
        return self.root.locator(".widget-html-content")

    @property
    def image(self) -> Locator:
        return self.root.locator("img.widget-image")

    @property
    def errors(self) -> Locator:
        return self.root.locator(".widget-output")

    def slider_handle(self, label: str) -> Locator:
        return self.root.locator(".widget-slider", has_text=label).locator(".noUi-handle")

    def fail_on_callback_error(self) -> None:
        """A callback that raises prints its traceback into the widget's Output area: report it."""
        fail_if_callback_raised(self.errors.inner_text())


def fail_if_callback_raised(error_area_text: str) -> None:
    """Fail with the exception's own last line first: "widget callback raised: RuntimeError: ..."."""
    traceback = error_area_text.strip()
    if traceback:
        pytest.fail(f"widget callback raised: {traceback.splitlines()[-1]}\n\n{traceback}", pytrace=False)


def find_widget(area: Locator | Page, part: str, timeout_ms: int = WIDGET_UPDATE_TIMEOUT_MS) -> Widget:
    """The one widget box in `area` with a readout and `part` (the plot image, or the ipympl figure)."""
    root = area.locator(f".widget-vbox:has({part}):has(.widget-html-content)")
    expect(root, f"exactly one widget with {part} should render").to_have_count(1, timeout=timeout_ms)
    return Widget(root)


def image_sha256(widget: Widget) -> str:
    """A digest of the PNG the browser shows: the blob URL changes on every update, the pixels may not."""
    return widget.image.evaluate(IMAGE_SHA256)


def wait_for_update(widget: Widget, updated: Locator, what: str) -> None:
    """Wait until `updated` appears or a callback reports an error.

    Watching the error area too makes a broken callback fail with its own message, not with a timeout.
    """
    error = widget.errors.locator(".jp-OutputArea-output")
    try:
        expect(updated.or_(error).first).to_be_attached(timeout=WIDGET_UPDATE_TIMEOUT_MS)
    except AssertionError:
        pytest.fail(f"{what}: the widget did not update within {WIDGET_UPDATE_TIMEOUT_MS / 1000:.0f} s", pytrace=False)
    widget.fail_on_callback_error()


def check_plot_changes(widget: Widget, action: Callable[[], str | None], what: str) -> None:
    """Do `action`, then require what a person would see: the kernel's new plot and a new readout.

    `action` may return text that the new readout must contain.
    """
    before_text, before_src = widget.readout.inner_text(), widget.image.get_attribute("src")
    before_sha = image_sha256(widget)
    expected_text = action()
    wait_for_update(widget, widget.root.locator(f'img.widget-image:not([src="{before_src}"])'), what)
    expect(widget.readout, f"{what}: the readout should change").not_to_have_text(before_text)
    if expected_text:
        expect(widget.readout, f"{what}: the readout should say so").to_contain_text(expected_text)
    assert image_sha256(widget) != before_sha, f"{what}: a new image arrived but it shows the same pixels"


def nudge_slider(page: Page, handle: Locator) -> int:
    """Click the slider's handle and press an arrow key, as a person does; returns the new value.

    The sliders use continuous_update=False: the kernel hears of a move only once the key is released.
    """
    value, top = float(handle.get_attribute("aria-valuenow")), float(handle.get_attribute("aria-valuemax"))
    key, new_value = ("ArrowLeft", value - 1) if value >= top else ("ArrowRight", value + 1)
    handle.click()
    page.keyboard.press(key)
    return int(new_value)


def move_slider_to(page: Page, widget: Widget, label: str, target: int, readout_text: str) -> None:
    """Click the handle and press arrow keys until it shows `target`; wait for the readout to say `readout_text`."""
    handle = widget.slider_handle(label)
    value = int(float(handle.get_attribute("aria-valuenow")))
    handle.click()
    for _ in range(abs(target - value)):
        page.keyboard.press("ArrowRight" if target > value else "ArrowLeft")
    wait_for_update(widget, widget.readout.filter(has_text=readout_text), f"moving {label} to {target}")


def check_every_step_is_drawn(page: Page, widget: Widget) -> None:
    """Notebook 01's promise: the prediction after every inner step, faint, with the chosen step bold.

    The readout names the faint and bold steps, and the plot has more faint-blue pixels with 8 faint lines
    than with none (the legend's faint sample and the bold line's anti-aliased edge are in both). With K = 2
    the steps fan out most: over 20 tasks the difference was 248 pixels or more.
    """
    move_slider_to(page, widget, "K (shots)", 2, "K = 2,")
    move_slider_to(page, widget, "grad steps", 9, "(faint: steps 1–8, bold: step 9)")
    with_path = widget.image.evaluate(FAINT_BLUE_PIXELS)
    move_slider_to(page, widget, "grad steps", 1, "steps = 1 (bold: step 1)")
    without = widget.image.evaluate(FAINT_BLUE_PIXELS)
    assert with_path > without + 100, f"faint-blue pixels: {with_path} with steps 1-8 faint, {without} with none"


def exercise_adaptation_widget(page: Page, widget: Widget) -> None:
    """Move K, move the steps, press "new task": each must redraw the plot and change the readout."""
    k_handle, steps_handle = widget.slider_handle("K (shots)"), widget.slider_handle("grad steps")
    check_plot_changes(widget, lambda: f"K = {nudge_slider(page, k_handle)},", "moving K")
    check_plot_changes(widget, lambda: f"steps = {nudge_slider(page, steps_handle)}", "moving the steps")
    check_plot_changes(widget, widget.root.get_by_role("button", name="new task").click, "pressing new task")


def assert_no_error_outputs(area: Locator, where: str) -> None:
    """No output shows a Python traceback (stderr as such is fine: warnings and progress bars use it).

    Widgets' error areas come first: a callback that raised while a cell moved a slider also makes
    that cell fail, and the callback's own error is the one to report.
    """
    for text in area.locator(".widget-output").all_inner_texts():
        if TRACEBACK.search(text):
            fail_if_callback_raised(text)
    for text in area.locator(".jp-OutputArea-output").all_inner_texts():
        if TRACEBACK.search(text):
            pytest.fail(f"{where} shows an error:\n{text[-3000:]}", pytrace=False)


def open_and_run_all(page: Page, lab: Server, notebook: str) -> Locator:
    """Open `notebook` in JupyterLab, wait for an idle kernel, Run > Run All Cells, wait until all ran."""
    page.goto(lab.url(f"lab/tree/{notebook}"))
    panel = page.locator(".jp-NotebookPanel")
    # The status bar names the kernel only once it is connected; the toolbar's indicator says "idle" before that.
    kernel_idle = page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\(ipykernel\) \| Idle"))
    expect(kernel_idle, "the notebook's kernel should start and be idle").to_be_visible(timeout=KERNEL_START_TIMEOUT_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    try:
        page.wait_for_function(ALL_CELLS_FINISHED, timeout=RUN_ALL_TIMEOUT_MS)
    except PlaywrightTimeout:
        prompts = " ".join(panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts())
        pytest.fail(f"{notebook}: Run All did not finish within {RUN_ALL_TIMEOUT_MS / 1000:.0f} s; "
                    f"code cell prompts: {prompts}", pytrace=False)
    expect(kernel_idle, "the kernel should be idle after Run All").to_be_visible()
    assert_no_error_outputs(panel, notebook)
    prompts = panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    not_run = [number for number, prompt in enumerate(prompts, 1) if not re.search(r"\d", prompt)]
    assert not not_run, f"{notebook}: code cells {not_run} (counting code cells only) did not run"
    return panel


def save_screenshots(panel: Locator, widget: Widget, folder: Path, name: str) -> None:
    """The notebook with the widget in view, and the widget alone (the README shows that one)."""
    widget.root.evaluate("element => element.scrollIntoView({block: 'center'})")
    panel.screenshot(path=folder / f"{name}.png")
    widget.root.screenshot(path=folder / f"{name}_widget.png")


def test_notebook_01_widget_in_jupyterlab(page: Page, lab: Server, screenshots: Path) -> None:
    notebook = "notebooks/01_sinusoid_maml.ipynb"
    panel = open_and_run_all(page, lab, notebook)
    widget = find_widget(panel, "img.widget-image")
    exercise_adaptation_widget(page, widget)
    check_every_step_is_drawn(page, widget)
    assert_no_error_outputs(panel, notebook)
    save_screenshots(panel, widget, screenshots, "01_sinusoid_maml")


def test_notebook_02_widgets_in_jupyterlab(page: Page, lab: Server, screenshots: Path) -> None:
    notebook = "notebooks/02_baselines_pretrain_oracle.ipynb"
    panel = open_and_run_all(page, lab, notebook)

    side_by_side = find_widget(panel, "img.widget-image")
    expect(side_by_side.readout).to_contain_text("pretrained: MSE on the curve")
    exercise_adaptation_widget(page, side_by_side)
    checkbox = side_by_side.root.get_by_role("checkbox", name="support points from x < 0 only")
    check_plot_changes(side_by_side, checkbox.click, "toggling 'support points from x < 0 only'")
    save_screenshots(panel, side_by_side, screenshots, "02_baselines_pretrain_oracle")

    clicker = find_widget(panel, ".jupyter-matplotlib")
    expect(clicker.readout).to_contain_text("0 point(s)")
    clicker.root.locator(".jupyter-matplotlib-canvas-div").click()  # the centre lies inside the axes
    wait_for_update(clicker, clicker.readout.filter(has_text="1 point(s)"), "clicking on the figure")
    assert_no_error_outputs(panel, notebook)
    save_screenshots(panel, clicker, screenshots, "02_baselines_pretrain_oracle_click")


def test_notebook_01_presented_with_voila(page: Page, voila: Server, screenshots: Path) -> None:
    page.goto(voila.url("/"), wait_until="commit")
    widget = find_widget(page, "img.widget-image", RUN_ALL_TIMEOUT_MS)  # Voilà runs every cell first
    code = page.locator(".jp-InputArea-editor, .jp-InputPrompt, .cm-editor")
    expect(code, "Voilà should hide every code cell").to_have_count(0)
    expect(page.locator("body"), "no code should be visible").not_to_contain_text("SinusoidAdaptationWidget(")
    check_plot_changes(widget, lambda: f"K = {nudge_slider(page, widget.slider_handle('K (shots)'))},", "moving K")
    assert_no_error_outputs(page.locator("body"), "Voilà page")
    widget.root.evaluate("element => element.scrollIntoView({block: 'center'})")
    page.screenshot(path=screenshots / "voila_01_sinusoid_maml.png")


def move_episode_sliders(page: Page, widget: Widget) -> None:
    """Each slider of the few-shot explorer, once: the picture and the readout must change."""
    expected = {"episode": "episode {},", "K (shots)": "5-way {}-shot", "grad steps": ", {} steps:"}
    for label, template in expected.items():
        handle = widget.slider_handle(label)
        check_plot_changes(widget, lambda: template.format(nudge_slider(page, handle)), f"moving {label}")


def test_notebook_03_episode_widget_in_jupyterlab(page: Page, lab: Server, screenshots: Path) -> None:
    notebook = "notebooks/03_omniglot.ipynb"
    panel = open_and_run_all(page, lab, notebook)
    widget = find_widget(panel, "img.widget-image")
    move_episode_sliders(page, widget)
    # The model selector: 20-way brings its own checkpoint and a figure with 20 rows of classes.
    five_way_height = widget.image.evaluate("image => image.naturalHeight")
    twenty = widget.root.get_by_role("button", name="20-way 1-shot", exact=True)
    check_plot_changes(widget, twenty.click, "choosing the 20-way model")
    expect(widget.readout).to_contain_text("20-way")
    expect(widget.readout).to_contain_text("model: 20-way 1-shot")
    assert widget.image.evaluate("image => image.naturalHeight") > five_way_height, "20 rows should be taller"
    handle = widget.slider_handle("grad steps")
    check_plot_changes(widget, lambda: f", {nudge_slider(page, handle)} steps:", "moving the steps, 20-way")
    assert_no_error_outputs(panel, notebook)
    save_screenshots(panel, widget, screenshots, "03_omniglot")


def test_notebook_04_episode_widget_in_jupyterlab(page: Page, lab: Server, screenshots: Path) -> None:
    """The MiniImagenet explorer: the same widget as notebook 03, with colour photographs."""
    notebook = "notebooks/04_miniimagenet.ipynb"
    panel = open_and_run_all(page, lab, notebook)
    widget = find_widget(panel, "img.widget-image")
    move_episode_sliders(page, widget)
    assert_no_error_outputs(panel, notebook)
    save_screenshots(panel, widget, screenshots, "04_miniimagenet")


def test_notebook_05_comparison_widget_in_jupyterlab(page: Page, lab: Server, screenshots: Path) -> None:
    """Two algorithms side by side: the sliders and new task as in notebook 01, and a drop-down that swaps one."""
    notebook = "notebooks/05_beyond_the_paper.ipynb"
    panel = open_and_run_all(page, lab, notebook)
    widget = find_widget(panel, "img.widget-image")
    exercise_adaptation_widget(page, widget)
    green = widget.root.locator("select").nth(1)

    def choose_five_step_maml() -> str:
        green.select_option(label="MAML, 5 steps")
        return "MAML, 5 steps: MSE on the curve"
    check_plot_changes(widget, choose_five_step_maml, "choosing another algorithm for the green slot")
    assert_no_error_outputs(panel, notebook)
    save_screenshots(panel, widget, screenshots, "05_beyond_the_paper")
