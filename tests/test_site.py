"""The course site (`make site`): built by the real Sphinx + myst-nb, then every page opened in headless Chromium.

The build takes the notebooks executed in smoke mode. Under `make test` those are the nbval runs of the same session
(tests/nb_capture.py; this file runs after them), so nothing executes twice; run alone, this file executes what it
lacks with `course_lib.reproduce` (minutes). Every page is then served by a local `http.server` on a free port and
opened in Chromium, checking: no console errors, every image loaded, each notebook page shows as many figures as its
notebook drew, the maths rendered by MathJax (and no TeX errors), and every internal link (with its #fragment)
resolves. Screenshots go to runs/browser/site_*.png.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import browser
import nb_capture
import nbformat
import pytest
import tomllib
from conftest import SHARED_DATA

from course_lib import reproduce, website

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = ("sphinx", "myst_nb", "sphinx_book_theme")


def _image_outputs(nb: nbformat.NotebookNode) -> int:
    return sum(any(k.startswith("image/") for k in o.get("data", {})) for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def site(request, tmp_path_factory) -> dict:
    """The built site: {"html": folder, "figures": page -> number of figures its notebook drew, "build_s": ...}."""
    missing = [name for name in SITE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"site packages not installed ({', '.join(missing)}): pip install -c constraints.txt -e '.[site]'")
    work = tmp_path_factory.mktemp("site")
    executed = work / "executed"
    executed.mkdir()
    plugin = request.config.pluginmanager.get_plugin(nb_capture.PLUGIN_NAME)
    captured = plugin.executed() if plugin else {}
    for name, nb in captured.items():
        nbformat.write(nb, executed / name)
    lacking = [p.name[:2] for p in reproduce.notebooks() if p.name not in captured]
    start = time.time()
    if lacking and SHARED_DATA is None:
        pytest.skip(f"offline CIFAR files not found (set COURSE_DATA_DIR) to execute notebooks {', '.join(lacking)}")
    if lacking:
        for path in website.execute_smoke(work / "runs", only=lacking).glob("*.ipynb"):
            path.rename(executed / path.name)
    executed_s = time.time() - start
    html = website.build(executed, work / "out")
    build_s = time.time() - start - executed_s
    print(f"\nsite: {len(captured)} notebooks from this session's nbval run, {len(lacking)} executed here "
          f"({executed_s:.0f} s); Sphinx build {build_s:.0f} s")
    figures = {f"notebooks/{p.stem}.html": _image_outputs(nbformat.read(p, as_version=4))
               for p in executed.glob("*.ipynb")}
    return {"html": html, "figures": figures, "build_s": build_s}


def test_site_packages_are_pinned():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["site"]
    pins = {re.split(r"[=<>]", line)[0].lower() for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert {re.split(r"[=<>\[ ]", spec)[0].lower() for spec in extra} <= pins


def test_every_notebook_and_the_reference_page_are_built(site):
    html = site["html"]
    expected = ["index.html", "reference.html", *(f"notebooks/{p.stem}.html" for p in reproduce.notebooks())]
    assert [page for page in expected if not (html / page).is_file()] == []
    reference = (html / "reference.html").read_text()
    assert reference.count("<img") >= len([p for p in website.REFERENCE_DIR.iterdir() if (p / "pretrain").is_dir()])
    assert "# Colab only: install" not in (html / "notebooks" / "00_setup.html").read_text()  # hidden on the site


@pytest.fixture(scope="module")
def chromium() -> str:
    return browser.require_browser()  # before `site`, so that a machine without a browser builds nothing


@pytest.mark.browser
def test_every_page_in_the_browser(chromium, site, tmp_path):
    html = site["html"]
    pages = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html") if "_static" not in p.parts)
    port = browser.free_port()
    base = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(html)]
    browser.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems, ids, links, status = [], {}, [], {}
    with browser.server(command, env={"PATH": "/usr/bin:/bin"}, cwd=html, log=tmp_path / "http.log",
                        ready_url=base), browser.headless_chromium(tmp_path / "chromium") as context:
        page = context.new_page()
        console = browser.ConsoleLog(page)
        for name in pages:
            seen = len(console.errors)
            response = page.goto(base + name, wait_until="load")
            assert response.ok, f"{name}: HTTP {response.status}"
            page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
            found = page.evaluate("""() => ({
              broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
              figures: document.querySelectorAll('article img').length,
              math: document.querySelectorAll('article .math').length,
              rendered: document.querySelectorAll('article .math mjx-container, article mjx-container').length,
              texErrors: document.querySelectorAll('mjx-merror').length,
              ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
              links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
            })""")
            page.screenshot(path=str(browser.SCREENSHOTS / f"site_{name.replace('/', '_')}.png"))
            problems += [f"{name}: {e}" for e in console.errors[seen:]]
            problems += [f"{name}: image not loaded: {src[:100]}" for src in found["broken"]]
            if found["figures"] < site["figures"].get(name, 0):
                problems.append(f"{name}: {found['figures']} images, its notebook drew {site['figures'][name]}")
            if found["math"] and found["rendered"] < found["math"]:
                problems.append(f"{name}: {found['rendered']} of {found['math']} maths elements rendered")
            if found["texErrors"]:
                problems.append(f"{name}: {found['texErrors']} TeX errors")
            ids[base + name] = set(found["ids"])
            links += [(name, link) for link in found["links"] if link.startswith(base)]
        for name, link in links:
            target, fragment = urldefrag(link)
            if target not in status:
                status[target] = page.request.get(target).status
            if status[target] != 200:
                problems.append(f"{name}: link {urlparse(link).path} answers {status[target]}")
            elif fragment and target in ids and fragment not in ids[target]:
                problems.append(f"{name}: link to #{fragment} in {urlparse(target).path}, which has no such id")
    print(f"\nsite: {len(pages)} pages, {len(links)} internal links ({len(status)} targets), built in "
          f"{site['build_s']:.0f} s")
    assert problems == []
    assert len(pages) >= len(reproduce.notebooks()) + 2
