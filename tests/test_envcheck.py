"""The classroom environment check (course_lib.envcheck): container limits, Colab, fixes for what is missing."""

from __future__ import annotations

import sys
import types

import pytest

from course_lib import envcheck


def _write(root, files: dict[str, str]):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("files, expected", [
    ({"memory.max": "2147483648\n", "memory.current": "536870912\n"}, (2**31, 2**29)),  # cgroup v2 (Binder: 2 GiB)
    ({"memory.max": "max\n", "memory.current": "1000\n"}, None),  # v2 without a limit
    ({"memory/memory.limit_in_bytes": "1073741824", "memory/memory.usage_in_bytes": "1000"}, (2**30, 1000)),  # v1
    ({"memory/memory.limit_in_bytes": "9223372036854771712", "memory/memory.usage_in_bytes": "1"}, None),
    ({}, None),
])
def test_cgroup_memory(tmp_path, files, expected):
    assert envcheck.cgroup_memory(_write(tmp_path, files)) == expected


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "100000 100000\n"}, 1.0),
    ({"cpu.max": "50000 100000\n"}, 0.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000", "cpu/cpu.cfs_period_us": "100000"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
    ({}, None),
])
def test_cgroup_cpus(tmp_path, files, expected):
    assert envcheck.cgroup_cpus(_write(tmp_path, files)) == expected


def test_memory_is_judged_by_the_container_limit(monkeypatch):
    monkeypatch.setattr(envcheck, "cgroup_memory", lambda: (2 * 2**30, int(1.3 * 2**30)))  # Binder, 1.3 GiB used
    check = envcheck._memory_check("binder")
    assert check.status == "warn" and "container limit 2.0 GiB" in check.detail and "Binder" in check.fix
    monkeypatch.setattr(envcheck, "cgroup_memory", lambda: (8 * 2**30, 2**30))
    assert envcheck._memory_check("local").status == "ok"


def test_more_torch_threads_than_the_cpu_quota_is_a_warning_with_the_fix(monkeypatch):
    import torch

    monkeypatch.setattr(envcheck, "cgroup_cpus", lambda: 1.0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    check = envcheck._cpu_check()
    assert check.status == "warn" and "torch.set_num_threads(1)" in check.fix and "OMP_NUM_THREADS=1" in check.fix
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert envcheck._cpu_check().status == "ok"


def test_on_colab_its_own_ipywidgets_7_is_fine(monkeypatch):
    import ipywidgets

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(ipywidgets, "__version__", "7.7.1")
    monkeypatch.delenv("COURSE_WIDGETS", raising=False)
    monkeypatch.delenv("COURSE_RUN_MODE", raising=False)
    assert envcheck.where() == "colab"
    rows = {c.item: c for c in envcheck.check_environment()}
    assert rows["ipywidgets"].status == "ok" and rows["widget frontend"].status == "ok"
    assert "Colab" in rows["running on"].detail and "Drive is never mounted" in rows["running on"].detail


def test_a_headless_run_says_widgets_are_static(monkeypatch):
    monkeypatch.delenv("COURSE_WIDGETS", raising=False)
    monkeypatch.setenv("COURSE_RUN_MODE", "smoke")
    assert "static" in envcheck._widget_check("local").detail
    monkeypatch.setenv("COURSE_WIDGETS", "1")  # what binder/start sets: a person is watching
    assert "static" not in envcheck._widget_check("local").detail


def test_mismatched_widget_frontend_is_a_warning(monkeypatch):
    import ipywidgets
    import jupyterlab_widgets

    monkeypatch.delenv("COURSE_WIDGETS", raising=False)
    monkeypatch.delenv("COURSE_RUN_MODE", raising=False)  # a set run mode means a headless run: static figures
    monkeypatch.setattr(ipywidgets, "__version__", "8.1.0")
    monkeypatch.setattr(jupyterlab_widgets, "__version__", "1.1.7")
    check = envcheck._widget_check("local")
    assert check.status == "warn" and "jupyterlab_widgets 3.x" in check.detail and check.fix


def test_a_missing_package_says_how_to_install_it_where_we_are(monkeypatch):
    monkeypatch.setitem(envcheck.REQUIRED_PACKAGES, "no_such_package_xyz", ("1.0", "nothing"))
    rows = {c.item: c for c in envcheck._package_checks("colab")}
    assert rows["no_such_package_xyz"].status == "missing" and "install cell" in rows["no_such_package_xyz"].fix
    rows = {c.item: c for c in envcheck._package_checks("local")}
    assert "constraints.txt" in rows["no_such_package_xyz"].fix


def test_without_data_every_dataset_and_checkpoint_says_it_will_be_downloaded(isolated_data):
    rows = {c.item: c for c in envcheck._data_checks()}
    assert rows["cifar10"].status == "warn" and "downloads it" in rows["cifar10"].detail
    assert "COURSE_DATA_DIR" in rows["cifar10"].fix
    checkpoints = [c for name, c in rows.items() if name.endswith(".th")]
    assert checkpoints and all(c.status == "warn" and "sha256" in c.detail for c in checkpoints)


def test_the_full_check_never_raises_and_lists_fixes(isolated_data):
    checks = envcheck.check_environment()
    items = [c.item for c in checks]
    for wanted in ("running on", "python", "torch", "graphviz dot", "widget frontend", "device", "cpu threads",
                   "memory", "data folders", "cifar10"):
        assert wanted in items
    assert "How to fix:" in envcheck.format_checks(checks)
