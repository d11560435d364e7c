"""Fixtures for the browser tests: our own JupyterLab or Voilà server, and Debian's headless Chromium.

Every server gets a free port on 127.0.0.1, a random token, and its Jupyter, IPython and JupyterLab
config/data/runtime/settings folders in a pytest tmp dir: a test run neither reads the user's Jupyter
set-up nor writes into the home folder or (autosave and checkpoints are off or moved) the repo.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_TIMEOUT_S = 60

# JupyterLab user settings: start the kernel without asking, never autosave the notebook back into
# the repo, render every cell (no virtual scrolling, so every output is in the DOM), and no news pop-up.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True, "windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
}


@dataclass
class Server:
    """A running JupyterLab or Voilà: where it listens and the token that opens it."""

    base_url: str
    token: str

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it when we bind to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(tmp: Path) -> dict[str, str]:
    """The environment with Jupyter's, IPython's and JupyterLab's writable folders moved into `tmp`.

    Installed lab extensions, kernels and Voilà templates are still found: they live in the venv's
    share/jupyter, which Jupyter always searches via sys.prefix.
    """
    folders = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime",
               "IPYTHONDIR": "ipython", "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
               "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces"}
    env = dict(os.environ)
    for name, folder in folders.items():
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        env[name] = str(tmp / folder)
    for plugin, settings in LAB_SETTINGS.items():
        path = tmp / "lab-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    return env


def wait_until_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it exits or never answers."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"server did not answer {url} within {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Terminate the server (it shuts its kernels down), and kill its process group if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_server(command: list[str], ready_path: str, port: int, token: str, tmp: Path) -> Iterator[Server]:
    """Start `command`, yield once it answers `ready_path`, and always stop it afterwards."""
    log = tmp / "server.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=REPO, env=isolated_env(tmp), stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        server = Server(f"http://127.0.0.1:{port}", token)
        wait_until_ready(process, server.url(ready_path), log)
        yield server
    finally:
        stop(process)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Server]:
    """JupyterLab serving the repo root, as `make lab` would, but isolated (see module docstring)."""
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={REPO}",
               f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    yield from run_server(command, "api/status", port, token, tmp_path)
    # JupyterLab drops a whole settings file it cannot validate, and then autosave would write into the repo.
    log = (tmp_path / "server.log").read_text()
    assert "Failed validating settings" not in log, f"JupyterLab rejected LAB_SETTINGS; see {tmp_path / 'server.log'}"


@pytest.fixture
def voila(tmp_path: Path) -> Iterator[Server]:
    """Voilà presenting notebook 01, as `make present` does, but isolated (see module docstring)."""
    port, token = free_port(), secrets.token_hex(16)
    command = [str(Path(sys.executable).parent / "voila"), "notebooks/01_sinusoid_maml.ipynb", "--no-browser",
               "--Voila.ip=127.0.0.1", f"--port={port}", "--Voila.port_retries=0", f"--token={token}",
               "--show_tracebacks=True", f"--Voila.connection_dir_root={tmp_path / 'runtime'}"]
    yield from run_server(command, "voila/static/voila.js", port, token, tmp_path)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (whose own browser download is not used).

    Its HOME is a tmp dir: Chromium writes crash-report settings and a dconf cache there.
    """
    if not CHROMIUM.exists():
        message = f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + "; in CI a skip would hide a broken install step")
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (requirements.txt)")
    home = tmp_path_factory.mktemp("chromium-home")
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, env=env)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Remember each phase's report on the test item, so that `page` can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Browser, screenshots: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser tab, large enough that a widget and its plot fit on screen.

    If the test fails, the tab is saved as `<test name>_failure.png`: in CI that is often the quickest clue.
    """
    failure_screenshot = screenshots / f"{request.node.name}_failure.png"
    failure_screenshot.unlink(missing_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        page.screenshot(path=failure_screenshot)
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The git-ignored folder the tests save their screenshots to."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
