"""`make reproduce`: execute every notebook with papermill in one run mode and write a summary under `runs/`.

    python -m course_lib reproduce --mode auto --out runs

For each `notebooks/NN_name.ipynb` it injects `RUN_MODE` (and the keys of `notebooks/params/NN_name.<mode>.yaml`
when that profile exists), writes the executed copy to `runs/<mode>/NN_name.ipynb`, and records status, wall time
and parameters in `runs/<mode>/summary.json` (written atomically after every notebook, so an interrupted run keeps
what it finished). A failing notebook is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .config import environment_info, resolve_mode
from .results import git_commit, write_json_atomic

__all__ = ["notebooks", "profile", "main"]

ROOT = Path(__file__).resolve().parents[1]


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The course notebooks in learning-path order."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def profile(notebook: Path, mode: str) -> dict:
    """Papermill parameters for `notebook` in `mode`: its yaml profile if present, always with `RUN_MODE`."""
    import yaml

    path = notebook.parent / "params" / f"{notebook.stem}.{mode}.yaml"
    params = yaml.safe_load(path.read_text()) if path.exists() else {}
    return {**(params or {}), "RUN_MODE": mode}


def main(argv: list[str] | None = None, prog: str = "python -m course_lib reproduce") -> int:
    """`python -m course_lib reproduce [--mode M] [--out DIR] [--only NN ...]`; see `--help`."""
    import papermill

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="auto", help="auto|smoke|cpu|full (auto: $COURSE_RUN_MODE, GPU, CPU)")
    parser.add_argument("--out", default="runs", type=Path)
    parser.add_argument("--only", nargs="*", default=None, help="notebook name prefixes to run, e.g. 00 03")
    args = parser.parse_args(argv)
    mode = resolve_mode(args.mode)
    os.environ.setdefault("COURSE_WIDGETS", "0")  # executed notebooks store static figures, not widget state
    out = args.out / mode
    out.mkdir(parents=True, exist_ok=True)
    summary = {"mode": mode, "git_commit": git_commit(), "environment": environment_info(), "notebooks": []}
    for nb in notebooks():
        if args.only and not any(nb.name.startswith(p) for p in args.only):
            continue
        params = profile(nb, mode)
        print(f"[{mode}] {nb.name} ...", flush=True)
        start, status, error = time.time(), "ok", None
        try:
            # The notebook's own output (its banner says whether a stored reference run is shown or the sweep is
            # computed, and how long that takes; the sweep's progress bar) streams to this terminal as it runs.
            papermill.execute_notebook(str(nb), str(out / nb.name), parameters=params, kernel_name="python3",
                                       cwd=str(nb.parent), progress_bar=sys.stderr.isatty(), log_output=True,
                                       stdout_file=sys.stdout, stderr_file=sys.stderr)
        except Exception as exc:  # record and go on with the next notebook
            status, error = "failed", f"{type(exc).__name__}: {str(exc)[-2000:]}"
        wall = round(time.time() - start, 1)
        print(f"[{mode}] {nb.name}: {status} in {wall} s", flush=True)
        summary["notebooks"].append({"notebook": nb.name, "status": status, "wall_time_s": wall,
                                     "parameters": params, "output": str(out / nb.name), "error": error})
        write_json_atomic(out / "summary.json", summary)
    failed = [n["notebook"] for n in summary["notebooks"] if n["status"] != "ok"]
    print(f"summary: {out / 'summary.json'}; {len(summary['notebooks']) - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0

