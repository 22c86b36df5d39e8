"""`make reproduce`: execute every notebook with papermill in one run mode and write a summary under `runs/`.

    python -m course_lib reproduce --mode auto --out runs
    python -m course_lib reproduce --mode smoke --only 01 03      # some notebooks; the summary keeps the others

For each `notebooks/NN_name.ipynb` it injects `RUN_MODE` (and the keys of `notebooks/params/NN_name.<mode>.yaml`
when that profile exists), writes the executed copy to `runs/<mode>/NN_name.ipynb`, and records status, wall time,
parameters and commit in `runs/<mode>/summary.json` (written atomically after every notebook, so an interrupted run
keeps what it finished). The summary is merged, never shrunk: an entry is replaced only by a new run of the same
notebook. A failing notebook is reported and the others still run; the exit status is 1 if any failed. `--only`
prefixes that match no notebook, an out dir that cannot be written, or another `reproduce` working in the same
folder (`runs/<mode>/.lock`) are errors before anything runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import locks
from .config import environment_info, resolve_mode
from .errors import ConfigError, NotReadyError, StoredResultError
from .outdir import problems as out_dir_problems
from .results import git_commit, read_json, write_json_atomic

__all__ = ["notebooks", "profile", "select", "merged_summary", "main"]

ROOT = Path(__file__).resolve().parents[1]
_NOTEBOOK_BYTES = 50 * 2**20  # ours: an executed notebook with its figures stays well below this


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The course notebooks in learning-path order."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def profile(notebook: Path, mode: str) -> dict:
    """Papermill parameters for `notebook` in `mode`: its yaml profile if present, always with `RUN_MODE`."""
    import yaml

    path = notebook.parent / "params" / f"{notebook.stem}.{mode}.yaml"
    params = yaml.safe_load(path.read_text()) if path.exists() else {}
    return {**(params or {}), "RUN_MODE": mode}


def select(available: list[Path], only: list[str] | None) -> list[Path]:
    """The notebooks whose names start with one of the `only` prefixes (all of them when `only` is None).

    Raises:
        ConfigError: a prefix that matches no notebook (every such prefix is named), or an empty `--only`.
    """
    if only is None:
        return available
    names = ", ".join(nb.name for nb in available)
    unmatched = [p for p in only if not any(nb.name.startswith(p) for nb in available)]
    if unmatched or not only:
        raise ConfigError(f"--only {' '.join(unmatched) or '(nothing)'} matches no notebook; the notebooks are "
                          f"{names} (give name prefixes such as 00 or 04_cifar)")
    return [nb for nb in available if any(nb.name.startswith(p) for p in only)]


def merged_summary(path: Path, mode: str) -> dict:
    """The summary at `path` to add this run's notebooks to, with this run's commit and environment on top; a new
    one when there is none.

    Raises:
        StoredResultError: `path` does not read as a summary, or it is another mode's (nothing is overwritten).
    """
    fresh = {"mode": mode, "git_commit": git_commit(), "environment": environment_info(), "notebooks": []}
    if not path.exists():
        return fresh
    try:
        old = read_json(path)
        entries = list(old["notebooks"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoredResultError(f"{path} does not read as a reproduce summary ({exc}); nothing was overwritten: move "
                                "it away, then run again") from None
    if old.get("mode") != mode:
        raise StoredResultError(f"{path} is the summary of mode {old.get('mode')!r}, not {mode!r}; nothing was "
                                "overwritten: choose another --out")
    return {**fresh, "notebooks": entries}


def _record(summary: dict, entry: dict) -> None:
    """Put `entry` into the summary in place of an older run of the same notebook, in learning-path order."""
    kept = [e for e in summary["notebooks"] if e["notebook"] != entry["notebook"]]
    summary["notebooks"] = sorted(kept + [entry], key=lambda e: e["notebook"])


def main(argv: list[str] | None = None, prog: str = "python -m course_lib reproduce") -> int:
    """`python -m course_lib reproduce [--mode M] [--out DIR] [--only NN ...]`; see `--help`."""
    import papermill

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="auto", help="auto|smoke|cpu|full (auto: $COURSE_RUN_MODE, GPU, CPU)")
    parser.add_argument("--out", default="runs", type=Path)
    parser.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run, e.g. 00 03")
    args = parser.parse_args(argv)
    mode = resolve_mode(args.mode)
    selected = select(notebooks(), args.only)
    out = args.out / mode
    problems = out_dir_problems(out, len(selected) * _NOTEBOOK_BYTES, "this reproduce run")
    if problems:
        raise NotReadyError(problems)
    summary = merged_summary(out / "summary.json", mode)
    os.environ.setdefault("COURSE_WIDGETS", "0")  # executed notebooks store static figures, not widget state
    ran = []
    with locks.hold(out / ".lock", "make reproduce", what=str(out), advice="Wait for it to finish, or choose "
                    "another --out."):
        for nb in selected:
            params = profile(nb, mode)
            print(f"[{mode}] {nb.name} ...", flush=True)
            start, status, error = time.time(), "ok", None
            try:
                # The notebook's own output (its banner says whether a stored reference run is shown or the sweep
                # is computed, and how long that takes; the sweep's progress bar) streams here as it runs.
                papermill.execute_notebook(str(nb), str(out / nb.name), parameters=params, kernel_name="python3",
                                           cwd=str(nb.parent), progress_bar=sys.stderr.isatty(), log_output=True,
                                           stdout_file=sys.stdout, stderr_file=sys.stderr)
            except Exception as exc:  # record and go on with the next notebook
                status, error = "failed", f"{type(exc).__name__}: {str(exc)[-2000:]}"
            wall = round(time.time() - start, 1)
            print(f"[{mode}] {nb.name}: {status} in {wall} s", flush=True)
            entry = {"notebook": nb.name, "status": status, "wall_time_s": wall, "parameters": params,
                     "output": str(out / nb.name), "error": error, "git_commit": git_commit(),
                     "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            ran.append(entry)
            _record(summary, entry)
            write_json_atomic(out / "summary.json", summary)
    failed = [e["notebook"] for e in ran if e["status"] != "ok"]
    print(f"summary: {out / 'summary.json'} ({len(summary['notebooks'])} notebooks); this run: "
          f"{len(ran) - len(failed)} ok, {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0
