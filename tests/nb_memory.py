"""Peak memory of each notebook in smoke mode (helpers for tests/test_memory.py).

Binder gives a session 1-2 GB of RAM, so every notebook must stay below `LIMIT_BYTES` in smoke mode. Two figures,
and the larger one counts:
- `kernel`: the kernel process's own peak resident set size (`VmHWM` of /proc/self/status), asked from inside the
  kernel after the last cell: exact, however short the peak. Not `getrusage(RUSAGE_SELF).ru_maxrss`: Linux carries
  that across fork and exec, so a kernel started by a 2 GB pytest process would report 2 GB before it ran a line.
  (Outside Linux, where there is no /proc, ru_maxrss is used.)
- `tree`: the peak of the summed proportional set size (PSS; RSS where PSS is not available) of the kernel and every
  process it starts (the torchrun workers of notebook 06), sampled every 0.2 s. PSS counts a page that several
  processes share once, as the container's memory limit does.
The Jupyter server's own ~100-150 MB on Binder come on top, hence 1.5 GB and not 2.

Every notebook runs once per `make test`, not twice:
- `NotebookMemory` is a pytest plugin (registered by tests/conftest.py) that measures each notebook during the
  `pytest --nbval-lax notebooks` part of the same session, just before nbval shuts the kernel down. It also moves
  the memory tests behind the notebook runs and prints a table at the end of the session.
- When a notebook was not run by nbval in this session (`pytest tests/test_memory.py` alone), the test executes
  it itself with nbclient, in smoke mode and with `COURSE_WIDGETS=0` as `course_lib.reproduce` does.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

LIMIT_BYTES = 1.5e9  # 1.5 GB
PLUGIN_NAME = "course-notebook-memory"
ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "runs" / "tests" / "notebook_peak_memory.json"

# Run inside the kernel; writes {"kernel": bytes} to the file named by the format argument.
_PEAK_CODE = """
import json as _json
try:
    with open("/proc/self/status") as _f:
        _peak = next(int(_l.split()[1]) * 1024 for _l in _f if _l.startswith("VmHWM:"))
except (OSError, StopIteration):
    import resource as _resource, sys as _sys
    _peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * (1 if _sys.platform == "darwin" else 1024)
with open({path!r}, "w") as _f:
    _json.dump({{"kernel": _peak}}, _f)
"""


def peak_bytes(record: dict) -> int:
    """The figure compared with the limit: the larger of the kernel's peak and its process tree's sampled peak."""
    return max(record["kernel"], record.get("tree", 0))


class TreeSampler:
    """Samples the summed PSS (else RSS) of process `pid` and its descendants in a background thread."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _size(proc: psutil.Process) -> int:
        try:
            return proc.memory_full_info().pss
        except (AttributeError, psutil.AccessDenied):
            return proc.memory_info().rss

    def _run(self):
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return  # the kernel is gone
            for proc in procs:
                try:
                    total += self._size(proc)
                except psutil.Error:
                    pass  # a child that just ended
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.peak


def _kernel_pid(kernel_manager) -> int | None:
    provisioner = getattr(kernel_manager, "provisioner", None)
    return getattr(provisioner, "pid", None)


def _read_and_remove(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    finally:
        os.remove(path)


def measure_running_kernel(kernel, timeout: float = 60) -> dict:
    """Ask a live nbval `RunningKernel` for its peak memory so far."""
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    msg_id = kernel.execute_cell_input(_PEAK_CODE.format(path=path), allow_stdin=False)
    kernel.await_reply(msg_id, timeout=timeout)
    return _read_and_remove(path)


def run_and_measure(notebook: Path, env: dict[str, str], timeout: float = 900) -> dict:
    """Execute `notebook` with nbclient (cwd = its folder) and return its peak memory; raises if a cell fails."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    nb.cells.append(nbformat.v4.new_code_cell(_PEAK_CODE.format(path=path)))
    samplers = []
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    client.on_notebook_start = lambda **_: samplers.append(TreeSampler(_kernel_pid(client.km)).start())
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        start = time.time()
        client.execute()
        record = _read_and_remove(path)
        record["wall_s"] = round(time.time() - start, 1)
        record["tree"] = samplers[0].stop() if samplers else 0
        return record
    finally:
        for sampler in samplers:
            sampler.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def format_table(records: dict[str, dict]) -> str:
    lines = [f"peak memory per notebook (smoke mode; limit {LIMIT_BYTES / 1e9:.1f} GB)",
             f"  {'notebook':<36} {'kernel MB':>9} {'tree MB':>8} {'wall s':>7}  measured by"]
    for name, r in sorted(records.items()):
        wall = f"{r['wall_s']:7.1f}" if r.get("wall_s") is not None else f"{'-':>7}"
        flag = "  OVER THE LIMIT" if peak_bytes(r) >= LIMIT_BYTES else ""
        lines.append(f"  {name:<36} {r['kernel'] / 1e6:9.0f} {r.get('tree', 0) / 1e6:8.0f} {wall}  "
                     f"{r['source']}{flag}")
    return "\n".join(lines)


class NotebookMemory:
    """pytest plugin: measures the kernel of every notebook nbval runs, orders and reports the memory tests."""

    def __init__(self):
        self.records: dict[str, dict] = {}  # notebook file name -> {"kernel", "tree", "wall_s", "source"}
        self._started: dict[str, float] = {}
        self._samplers: dict[str, TreeSampler] = {}

    def pytest_collection_modifyitems(self, items):
        # The memory tests read what the nbval run measured, so they go last (stable order otherwise).
        items.sort(key=lambda item: item.path.name == "test_memory.py")

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_setup(self, item):
        # trylast: after nbval has started the notebook's kernel (in the setup of its first cell).
        if type(item).__name__ != "IPyNbCell" or item.parent.path.name in self._started:
            return
        name = item.parent.path.name
        self._started[name] = time.time()
        kernel = getattr(item.parent, "kernel", None)
        pid = _kernel_pid(getattr(kernel, "km", None))
        if pid is not None:
            self._samplers[name] = TreeSampler(pid).start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item, nextitem):
        # tryfirst: before pytest's own teardown, which shuts the kernel down after the notebook's last cell.
        kernel = getattr(item.parent, "kernel", None)
        if type(item).__name__ != "IPyNbCell" or kernel is None or not kernel.is_alive():
            return
        if nextitem is not None and nextitem.parent is item.parent:
            return
        name = item.parent.path.name
        sampler = self._samplers.pop(name, None)
        tree = sampler.stop() if sampler else 0
        try:
            record = measure_running_kernel(kernel)
        except Exception as exc:  # a dead or stuck kernel: nbval reports the failure itself
            print(f"\n[notebook memory] could not measure {name}: {exc!r}", file=sys.stderr)
            return
        record["tree"] = tree
        record["wall_s"] = round(time.time() - self._started.get(name, time.time()), 1)
        record["source"] = "nbval run"
        self.records[name] = record

    def pytest_terminal_summary(self, terminalreporter):
        if not self.records:
            return
        terminalreporter.write_sep("-", "notebook memory")
        terminalreporter.write_line(format_table(self.records))
        try:
            REPORT.parent.mkdir(parents=True, exist_ok=True)
            REPORT.write_text(json.dumps({"limit_bytes": LIMIT_BYTES, "notebooks": self.records}, indent=2) + "\n")
            terminalreporter.write_line(f"  (also written to {REPORT.relative_to(ROOT)})")
        except OSError:
            pass
