"""The sliders of notebooks 00-03 work in a real JupyterLab in a real browser (headless Chromium via Playwright).

The module starts the pinned JupyterLab on a free localhost port with a token, a temporary settings, workspace and
runtime folder, `COURSE_RUN_MODE=smoke` and `COURSE_WIDGETS=1` (as binder/start does: a person is watching, so
`viz.interactive` draws live ipywidgets, not its static figure). For each notebook that calls `viz.interactive` it
opens the notebook, runs all cells, and checks:
- no cell has an error output and every code cell ran;
- each `viz.interactive` cell shows a live ipywidgets panel (a widget view in the cell's outputs, rendered as an
  `ipywidgets` slider in the page), not the static fallback;
- pressing an arrow key on each focused slider (and picking another item in each drop-down) redraws its figure: the
  panel's PNG bytes differ afterwards;
- the kernel is alive at the end.
Screenshots of each panel before and after go to runs/browser/. The server and its kernels are stopped even when a
check fails, and the notebook folder is left as it was (autosave off, checkpoints in the temporary folder; the
fixture checks the notebooks' bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path

import browser
import nbformat
import pytest
from conftest import SHARED_DATA

from course_lib import reproduce

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
WIDGET_NOTEBOOKS = [p for p in reproduce.notebooks()
                    if any("viz.interactive(" in c.source for c in nbformat.read(p, as_version=4).cells)]
RUN_TIMEOUT_S = 300  # run-all of one notebook in smoke mode; 02 takes about 45 s on 2 busy cores
REDRAW_TIMEOUT_S = 60

# User settings for the test's JupyterLab (its own settings folder). Without windowingMode "none" JupyterLab 4 puts
# only the cells in view into the page; with autosave on, it would write outputs into the repository's notebooks.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def _file_hashes(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab (url, token) and a headless Chromium page on it, for the whole module."""
    browser.require_browser()
    if SHARED_DATA is None:  # notebooks 00 and 02 read CIFAR
        pytest.skip("offline CIFAR files not found (set COURSE_DATA_DIR)")
    home = tmp_path_factory.mktemp("lab")
    for name, values in LAB_SETTINGS.items():
        (home / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "settings" / name).write_text(json.dumps(values))
    port, token = browser.free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MPLBACKEND"))}
    env.update(COURSE_RUN_MODE="smoke", COURSE_WIDGETS="1", JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_DATA_DIR=str(home / "data"),
               IPYTHONDIR=str(home / "ipython"), COURSE_DATA_DIR=str(SHARED_DATA))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={ROOT}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
               f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}",  # absolute: not beside the notebooks
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses root otherwise (CI runs as root)
    url = f"http://127.0.0.1:{port}"
    before = _file_hashes(WIDGET_NOTEBOOKS)
    checkpoints = ROOT / "notebooks" / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    browser.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with browser.server(command, env=env, cwd=ROOT, log=home / "jupyterlab.log",
                        ready_url=f"{url}/api/status?token={token}"), \
            browser.headless_chromium(home / "chromium") as context:
        page = context.new_page()
        console = browser.ConsoleLog(page)
        page.goto(f"{url}/lab?token={token}", wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        page.evaluate("async () => { await window.jupyterapp.started; await window.jupyterapp.restored; }")
        yield {"url": url, "token": token, "page": page, "console": console, "log": home / "jupyterlab.log"}
    assert _file_hashes(WIDGET_NOTEBOOKS) == before, "the browser session changed a notebook file"
    assert had_checkpoints or not checkpoints.exists(), "the server wrote checkpoints beside the notebooks"


# --- what the page is asked (JavaScript run in the page through window.jupyterapp) --------------------------------

_OPEN = """async (path) => {
  const app = window.jupyterapp;
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  return panel.id;
}"""

_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = Array.from(panel.content.model.cells).filter(c => c.type === 'code');
  const outputs = cells.map(c => c.outputs.toJSON());
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {
    code: cells.length,
    executed: cells.filter(c => c.executionCount !== null).length,
    running: cells.filter(c => c.executionState === 'running').length,
    kernel: kernel ? kernel.status : 'none',
    kernelId: kernel ? kernel.id : null,
    errors: outputs.flat().filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
    widgetCells: cells.map((c, i) => [c.sharedModel.source, outputs[i]])
      .filter(([source]) => source.includes('viz.interactive('))
      .map(([source, outs]) => outs.some(o => o.data && o.data['application/vnd.jupyter.widget-view+json'])),
  };
}"""

_CLOSE = """async () => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.sessionContext) return;
  await panel.sessionContext.shutdown();
  panel.context.model.dirty = false;  // close without a save dialog: the file on disk stays as it was
  panel.dispose();
}"""

_PANEL_IMAGE = """(panel) => {
  const img = panel.querySelector('.widget-output img');
  return img && img.complete && img.naturalWidth > 0 ? img.src : null;
}"""


def _wait_for_run(page, timeout: float) -> dict:
    deadline, state, settled = time.time() + timeout, None, 0
    while time.time() < deadline:
        state = page.evaluate(_STATE)
        if state["kernel"] in ("dead", "none") and time.time() > deadline - timeout + 30:
            raise RuntimeError(f"the kernel is {state['kernel']}: {state}")
        done = state["kernel"] == "idle" and state["running"] == 0 and (
            state["executed"] == state["code"] or state["errors"])
        settled = settled + 1 if done else 0
        if settled >= 3:  # idle on three polls in a row: nothing is queued any more
            return state
        time.sleep(1)
    raise TimeoutError(f"run-all did not finish in {timeout:.0f} s; last state {state}")


def _wait_for_new_image(panel, old: str, timeout: float = REDRAW_TIMEOUT_S) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        src = panel.evaluate(_PANEL_IMAGE)
        if src and src != old:
            return src
        time.sleep(0.25)
    raise TimeoutError(f"the figure was not redrawn within {timeout} s")


def _move_slider(page, slider) -> tuple[str, str]:
    """Focus a slider's handle and press one arrow key, towards the inside of its range; returns the readout
    before and after."""
    handle, readout = slider.locator(".noUi-handle"), slider.locator(".widget-readout")
    before = readout.inner_text()
    at_max = float(handle.get_attribute("aria-valuenow")) >= float(handle.get_attribute("aria-valuemax"))
    handle.focus()
    page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")
    deadline = time.time() + 5
    while readout.inner_text() == before and time.time() < deadline:
        time.sleep(0.1)
    return before, readout.inner_text()


def _drive_panel(page, panel, name: str) -> list[str]:
    """Move every slider of one `viz.interactive` panel, then pick another item in each drop-down, checking after
    each change that the panel's figure was redrawn (other PNG bytes). Returns what was changed, in words."""
    changed = []
    for s in range(panel.locator(".widget-slider").count()):
        slider = panel.locator(".widget-slider").nth(s)
        label = slider.locator(".widget-label").inner_text()
        image = panel.evaluate(_PANEL_IMAGE)
        panel.screenshot(path=str(browser.SCREENSHOTS / f"{name}_slider{s}_before.png"))
        before, after = _move_slider(page, slider)
        assert after != before, f"{name}: slider {label!r} did not move from {before}"
        _wait_for_new_image(panel, image)
        panel.screenshot(path=str(browser.SCREENSHOTS / f"{name}_slider{s}_after.png"))
        changed.append(f"{label} {before} -> {after}")
    for d in range(panel.locator(".widget-dropdown").count()):
        select = panel.locator(".widget-dropdown select").nth(d)
        label = panel.locator(".widget-dropdown").nth(d).locator(".widget-label").inner_text()
        image = panel.evaluate(_PANEL_IMAGE)
        select.select_option(index=1)
        _wait_for_new_image(panel, image)
        panel.screenshot(path=str(browser.SCREENSHOTS / f"{name}_dropdown{d}_after.png"))
        changed.append(f"{label} -> {select.input_value()}")
    return changed


@pytest.mark.parametrize("path", WIDGET_NOTEBOOKS, ids=[p.stem for p in WIDGET_NOTEBOOKS])
def test_sliders_are_live_and_redraw_their_figure(lab, path):
    page, stem = lab["page"], path.stem
    page.evaluate(_OPEN, path.relative_to(ROOT).as_posix())
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    try:
        state = _wait_for_run(page, RUN_TIMEOUT_S)
        page.screenshot(path=str(browser.SCREENSHOTS / f"{stem}.png"))
        assert not state["errors"], f"error outputs: {state['errors']}"
        assert state["executed"] == state["code"], f"only {state['executed']} of {state['code']} cells ran"
        assert state["widgetCells"] and all(state["widgetCells"]), \
            "a viz.interactive cell shows no live widget (static fallback or no widget frontend)"

        panels = page.locator(".jp-Notebook .widget-interact")
        assert panels.count() == len(state["widgetCells"])
        changed = []
        for p in range(panels.count()):
            panel = panels.nth(p)
            panel.scroll_into_view_if_needed()
            page.wait_for_function(f"() => document.querySelectorAll('.jp-Notebook .widget-interact')[{p}]"
                                   ".querySelector('.widget-output img')", timeout=REDRAW_TIMEOUT_S * 1000)
            sliders = panel.locator(".widget-slider").count()
            assert sliders > 0, "a viz.interactive panel without a slider"
            assert panel.locator(".widget-slider .noUi-handle").count() == sliders  # ipywidgets' live slider
            changed += _drive_panel(page, panel, f"{stem}_panel{p}")
        print(f"{stem}: redrawn after {'; '.join(changed)}")

        state = page.evaluate(_STATE)
        assert state["kernel"] in ("idle", "busy"), f"kernel {state['kernel']}"
        kernel = page.request.get(f"{lab['url']}/api/kernels/{state['kernelId']}",
                                  headers={"Authorization": f"token {lab['token']}"})
        assert kernel.ok and kernel.json()["execution_state"] != "dead"
        assert not state["errors"], f"error outputs after moving the sliders: {state['errors']}"
    finally:
        page.evaluate(_CLOSE)


def test_the_notebooks_with_widgets_are_found():
    # The notebooks the DESIGN's widget promise covers; a new one that calls viz.interactive joins automatically.
    assert {"00_setup", "01_function_spaces", "02_prelu_linearization", "03_paths_and_napl"} <= \
        {p.stem for p in WIDGET_NOTEBOOKS}
