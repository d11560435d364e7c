"""The static site that `make site` writes, read the way a reader without a kernel reads it: in Chromium.

Every page must load from disk with no request leaving the machine, show its figures (decoded images, not
broken ones), show no error output, show every widget as a snapshot rather than a dead control, and link
only to pages and anchors that exist. Run `make site` first; `make test-browser` then includes these tests.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pinned in requirements.txt)")
from playwright.sync_api import Page  # noqa: E402

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("MAML_SITE_DIR", REPO / "site"))
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w+(Error|Exception): ", re.MULTILINE)
# Each image's size once decoded: a broken or empty data URI decodes to 0 x 0.
IMAGES = "images => images.map(image => [image.naturalWidth, image.naturalHeight, image.src.slice(0, 40)])"
LINKS = "links => links.map(link => link.getAttribute('href'))"


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        message = f"no site in {SITE}: run `make site` first"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI builds it before the browser tests)")
        pytest.skip(message)
    return SITE


def open_offline(page: Page, path: Path) -> list[str]:
    """Open a page from disk, refusing (and recording) every request that is not for a local file or data URI."""
    refused: list[str] = []

    def route(route) -> None:
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    response = page.goto(path.as_uri(), wait_until="load")
    assert response is None or response.ok, f"{path.name} did not load"
    return refused


def check_links(page: Page, path: Path) -> None:
    """Every link to a local file names one that exists, and every #anchor an element on its page."""
    for href in page.locator("a[href]").evaluate_all(LINKS):
        parsed = urlparse(href)
        if parsed.scheme in ("http", "https", "mailto"):
            continue
        target = (path.parent / unquote(parsed.path)).resolve() if parsed.path else path
        assert target.is_file(), f"{path.name}: link {href!r} points to {target}, which the site does not have"
        if parsed.fragment and target == path:  # nbconvert's heading ids keep the percent-encoding of their links
            names = {parsed.fragment, unquote(parsed.fragment)}
            anchor = page.locator(", ".join(f'[id="{name}"], a[name="{name}"]' for name in names))
            assert anchor.count() > 0, f"{path.name}: link {href!r} points to an anchor that is not on the page"


def test_index_lists_every_lesson_and_its_solutions(page: Page, site: Path) -> None:
    index = site / "index.html"
    assert open_offline(page, index) == [], "the index must not fetch anything from the network"
    hrefs = set(page.locator("a[href]").evaluate_all(LINKS))
    expected = {f"{path.stem}.html" for path in NOTEBOOKS}
    assert expected <= hrefs, f"the index does not link to {sorted(expected - hrefs)}"
    check_links(page, index)


@pytest.mark.parametrize("notebook", [path.stem for path in NOTEBOOKS])
def test_page_reads_without_a_kernel(page: Page, site: Path, notebook: str, screenshots: Path) -> None:
    path = site / f"{notebook}.html"
    assert path.is_file(), f"{path} is missing: `make site` builds one page per notebook"
    refused = open_offline(page, path)
    assert refused == [], f"{notebook}: the page tried to fetch from the network: {refused[:5]}"

    images = page.locator(".jp-OutputArea-output img, .static-widget img").evaluate_all(IMAGES)
    assert images, f"{notebook}: no figures on the page"
    broken = [src for width, height, src in images if width == 0 or height == 0]
    assert not broken, f"{notebook}: {len(broken)} of {len(images)} images do not decode: {broken[:3]}"

    outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
    errors = [text for text in outputs if TRACEBACK.search(text)]
    assert not errors, f"{notebook}: an output shows an error:\n{errors[0][-2000:]}"
    assert page.locator('[data-mime-type="application/vnd.jupyter.stderr"]', has_text="Traceback").count() == 0

    # A widget is a snapshot (its plot and readout), never a control that cannot reach a kernel.
    assert page.get_by_text("Loading widget", exact=False).count() == 0, f"{notebook}: a widget placeholder remains"
    assert page.locator("script[type='application/vnd.jupyter.widget-view+json']").count() == 0
    for widget in page.locator(".static-widget").all():
        assert widget.locator("img").count() >= 1, f"{notebook}: a widget snapshot has no picture"

    check_links(page, path)
    page.screenshot(path=screenshots / f"site_{notebook}.png")


def test_widgets_show_their_last_state(page: Page, site: Path) -> None:
    """Notebook 01 moves its widget to K = 10 and 10 steps in a cell; the page shows that state, every step drawn."""
    open_offline(page, site / "01_sinusoid_maml.html")
    widget = page.locator(".static-widget").first
    assert "K = 10, steps = 10 (faint: steps 1–9, bold: step 10)" in widget.inner_text()
    open_offline(page, site / "03_omniglot.html")
    explorer = page.locator(".static-widget", has_text="5-way 3-shot, 5 steps")
    assert explorer.count() == 1 and "model 5-way 1-shot" in explorer.inner_text()
