"""Shared fixtures: the offline data folder, skipping data tests with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config):
    # A plugin object, not a conftest hook, so that it also sees the notebooks/ items of `pytest tests notebooks`.
    import nb_memory

    if not config.pluginmanager.has_plugin(nb_memory.PLUGIN_NAME):
        config.pluginmanager.register(nb_memory.NotebookMemory(), nb_memory.PLUGIN_NAME)

    import nb_capture  # executed notebooks for the site test (tests/test_site.py)

    if not config.pluginmanager.has_plugin(nb_capture.PLUGIN_NAME):
        config.pluginmanager.register(nb_capture.NotebookCapture(), nb_capture.PLUGIN_NAME)


def _shared_data() -> Path | None:
    env = os.environ.get("COURSE_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[2] / "shared" / "data"]:
        if (candidate / "cifar10_lossless_subset.npz").is_file():
            return candidate
    return None


SHARED_DATA = _shared_data()
needs_data = pytest.mark.skipif(SHARED_DATA is None, reason="offline CIFAR files not found (set COURSE_DATA_DIR)")


@pytest.fixture
def data_dir() -> Path:
    if SHARED_DATA is None:
        pytest.skip("offline CIFAR files not found (set COURSE_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture
def isolated_data(monkeypatch, tmp_path):
    """No data anywhere: COURSE_DATA_DIR points at an empty folder and the repo/cache folders are hidden."""
    from course_lib import data

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("COURSE_DATA_DIR", str(empty))
    monkeypatch.setattr(data, "REPO_DATA_DIR", tmp_path / "repo_data")
    monkeypatch.setattr(data, "_CACHE_DIR", tmp_path / "cache")
    return empty
