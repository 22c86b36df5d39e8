"""Helpers for the browser tests (test_browser_widgets.py, test_site.py): headless Chromium through Playwright, and
local servers that are always stopped.

Playwright's own browser download is not used: the tests drive the system's Chromium (Debian's `chromium`, which
`make chromium` installs when run as root) through `executable_path`. Without Playwright or Chromium the tests skip
and say which one is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "runs" / "browser"  # git-ignored (runs/)
ENV_CHROMIUM = "COURSE_CHROMIUM"  # path of a Chromium binary, where it is not on PATH
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless, and quiet: no sandbox (we may be root), no GPU, no calls home, no first-run pages.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_executable() -> str | None:
    """The Chromium binary to drive: `$COURSE_CHROMIUM`, else the first of `CHROMIUM_NAMES` on PATH."""
    if os.environ.get(ENV_CHROMIUM):
        return os.environ[ENV_CHROMIUM] if os.access(os.environ[ENV_CHROMIUM], os.X_OK) else None
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def require_browser() -> str:
    """The Chromium path; skips the test, saying what is missing, without Playwright or Chromium."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the Python package playwright is not installed (pip install -e '.[site]')")
    executable = chromium_executable()
    if executable is None and os.environ.get(ENV_CHROMIUM):
        pytest.skip(f"${ENV_CHROMIUM}={os.environ[ENV_CHROMIUM]} is not an executable file")
    if executable is None:
        pytest.skip(f"no Chromium found ({', '.join(CHROMIUM_NAMES)} on PATH, or ${ENV_CHROMIUM}); "
                    "`make chromium` installs Debian's as root, or `apt install chromium`")
    return executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until `url` answers 200, failing early (with the reason) if `process` ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _stop_tree(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process and everything it started (kernels run in sessions of their own), then SIGKILL."""
    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


@contextlib.contextmanager
def server(command: list[str], *, env: dict[str, str], cwd: Path, log: Path, ready_url: str,
           timeout: float = 120) -> Iterator[subprocess.Popen]:
    """Run a server until the block ends, however it ends; its output goes to `log`.

    Args:
        command: the server's command line.
        env: its complete environment.
        cwd: its working directory.
        log: file for its stdout and stderr (read it when a test fails).
        ready_url: a URL that answers 200 once the server is up.
        timeout: seconds to wait for `ready_url`.
    """
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group, stopped as one
        try:
            wait_for_http(ready_url, process, timeout)
            yield process
        finally:
            _stop_tree(process)


@contextlib.contextmanager
def headless_chromium(profile_dir: Path, viewport: dict[str, int] | None = None) -> Iterator[Any]:
    """A Playwright browser context on headless system Chromium with a fresh profile in `profile_dir`."""
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile_dir), executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport=viewport or {"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


class ConsoleLog:
    """Collects a page's console errors and uncaught exceptions."""

    def __init__(self, page: Any):
        self.errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"console: {message.text} ({message.location.get('url', '')})"))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
