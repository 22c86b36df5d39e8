"""Before any work: every check a sweep or a stage makes first, and the locks it holds while it works.

Three decorators wrap the stages of a protocol (`experiments`, `imagenet`):

- `holds_folder` on `sweep(cfg)`: checks, without writing anything, that no stored result of its grid was made with
  other settings, that the out dir can take the run (`outdir.problems`: a folder, writable, enough free space), that
  the device exists and that the inputs load (`cfg.input_problems()`: data, start checkpoint); every problem is
  reported in one error. Then it holds `<out_dir>/.lock` for the whole sweep: a second sweep into the folder stops at
  once, naming the holder; so does a sweep that finds `--one-run` processes working there.
- `pretrain_stage` on `pretrain(cfg, seed)`: the same checks when the stage is not stored yet, then the lock of its
  start folder (`protocol.start_dir`); a second process *waits* for it and then reads the stored start network back
  (so several `--one-run` processes can be started at once and share one pre-training).
- `posttrain_stage` on `post_train(cfg, granularity, seed, omega=…, target=…)`: `<out_dir>/runs/<run>.lock`; a second
  process computing the same run stops at once.

A stage that starts writes `<stage>.settings` (its result-defining settings) next to its checkpoints and removes it
when its result is stored; an interrupted stage is resumed only by a config with the same settings, so a checkpoint
made with other settings is never continued into a result. Under torchrun only rank 0 takes locks; the other ranks
wait for it at a barrier. Ours (the paper is silent): all of it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import locks, outdir, protocol, train
from .errors import CourseError, InUseError, NotReadyError, StoredResultError
from .results import run_name, write_json_atomic

__all__ = ["problems_before_work", "check_before_work", "stored_problems", "holds_folder", "pretrain_stage",
           "posttrain_stage", "load_problems"]

_SWEEP_ADVICE = ("Wait for it to finish (its results are then read back, not recomputed), or choose another out_dir "
                 "(--out, OUT_DIR).")


# ---------------------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------------------

def load_problems(*loads: Callable[[], object]) -> list[str]:
    """Call each `load` (reading a data file, a checkpoint) and return the messages of the course errors they raise,
    so that every missing or damaged input is reported at once."""
    found = []
    for load in loads:
        try:
            load()
        except CourseError as exc:
            if str(exc) not in found:  # the train and test split of one damaged file: one problem
                found.append(str(exc))
    return found


def _device_problems(cfg: Any) -> list[str]:
    import torch

    device = str(getattr(cfg, "device", "auto"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        return [f"device {device!r} is not available here (no CUDA GPU is visible): use device='auto' or 'cpu'"]
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return ["device 'mps' is not available here: use device='auto' or 'cpu'"]
    return []


def problems_before_work(cfg: Any, pretrain_left: bool, runs_left: int) -> list[str]:
    """Everything that would stop a run of `cfg` later, found now without writing anything: the out dir (a folder,
    writable, free space for `pretrain_left` and `runs_left` runs), the device, `data_dir`, and
    `cfg.input_problems()` (the protocol's data and start checkpoint, loaded)."""
    need = outdir.bytes_needed(cfg, pretrain_left, runs_left)
    what = "this sweep" if runs_left > 1 else "this run"
    found = outdir.problems(cfg.out_dir, need, what) + _device_problems(cfg)
    data_dir = getattr(cfg, "data_dir", None)
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        found.append(f"data_dir {data_dir} is not a folder (it is searched first for the data): give an existing "
                     "folder, or leave it unset (None) to use $COURSE_DATA_DIR, then the repository's data/")
    inputs = getattr(cfg, "input_problems", None)
    return found + (inputs(need_start=pretrain_left) if inputs else [])


def check_before_work(cfg: Any, pretrain_left: bool, runs_left: int) -> None:
    """Raise one `NotReadyError` listing every problem of `problems_before_work`; return when there is none."""
    found = problems_before_work(cfg, pretrain_left, runs_left)
    if found:
        raise NotReadyError(found)


def _settings(cfg: Any, stage: str) -> dict:
    values = json.loads(json.dumps(asdict(cfg)))  # tuples as JSON holds them
    return {f: values[f] for f in cfg.defining(stage)}


def _leftovers(folder: Path, stem: str | None) -> list[Path]:
    """The files an interrupted stage left (checkpoints): in `folder`, all of them (pre-training) or `<stem>.*`."""
    if not folder.is_dir():
        return []
    files = folder.iterdir() if stem is None else folder.glob(f"{stem}.*")
    return sorted(p for p in files if p.is_file() and p.suffix not in (".lock", ".settings", ".json"))


def _record(folder: Path, stem: str | None) -> Path:
    return folder / f"{stem or 'started'}.settings"


def _record_problem(cfg: Any, stage: str, folder: Path, stem: str | None) -> str | None:
    """The sentence for an interrupted stage whose checkpoints were made with other settings (None if there is none)."""
    record, leftovers = _record(folder, stem), _leftovers(folder, stem)
    if not leftovers or not record.exists():
        return None
    try:
        old = json.loads(record.read_text())
    except (OSError, ValueError):
        return None  # unreadable: cannot tell, resume as without a record
    mine = _settings(cfg, stage)
    differ = {f: (old.get(f, "<not recorded>"), v) for f, v in mine.items() if old.get(f, "<not recorded>") != v}
    if not differ:
        return None
    listing = ", ".join(f"{f}: started with {a!r} vs now {b!r}" for f, (a, b) in differ.items())
    files = ", ".join(p.name for p in leftovers)
    return (f"{folder} holds an interrupted {stage} made with other settings ({listing}; files {files}). Nothing was "
            "overwritten: run again with those settings to finish it, choose another out_dir, or delete those files "
            "to start over.")


def _grid(cfg: Any) -> list[dict]:
    """Every post-training run of a sweep, as keyword arguments of `protocol.stored_run` and `run_name`."""
    return [dict(granularity=g, seed=s, omega=w, target=t) for g, s, w, t in protocol.grid(cfg)]


def _start_seeds(cfg: Any) -> tuple[int, ...]:
    """The seeds whose start networks a sweep makes: each seed with independent starts, else the first."""
    return tuple(cfg.seeds) if cfg.independent_starts else tuple(cfg.seeds[:1])


def stored_problems(cfg: Any) -> list[str]:
    """Every stored result (or interrupted stage) of `cfg`'s sweep made with other settings, one sentence each; a
    result file that does not read is one too. Reads only."""
    out = Path(cfg.out_dir)
    checks = [functools.partial(protocol.stored_pretrain, cfg, seed) for seed in _start_seeds(cfg)]
    checks += [functools.partial(protocol.stored_run, cfg, **run) for run in _grid(cfg)]
    found = []
    for check in checks:
        try:
            check()
        except StoredResultError as exc:
            found.append(str(exc))
        except ValueError as exc:  # a result file that is not JSON
            found.append(f"a stored result in {out} does not read ({exc}): a damaged file; move it away and run "
                         "again to recompute that result")
    records = [_record_problem(cfg, protocol.PRETRAIN, protocol.start_dir(cfg, seed), None)
               for seed in _start_seeds(cfg)]
    records += [_record_problem(cfg, protocol.POSTTRAIN, out / "runs", run_name(**run)) for run in _grid(cfg)]
    return found + [r for r in records if r]


# ---------------------------------------------------------------------------------------------------------------------
# Locks (rank 0 only under torchrun)
# ---------------------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _on_rank0(lock: contextlib.AbstractContextManager) -> Iterator[None]:
    """`lock` in the process that writes (rank 0 under torchrun); the other ranks wait until it is held."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        with lock:
            yield
        return
    import torch.distributed as dist

    rank, _ = train.init_distributed()
    if rank == 0:
        with lock:
            dist.barrier()
            yield
    else:
        dist.barrier()
        yield


def _refuse_if_a_sweep_holds(cfg: Any) -> None:
    lock = Path(cfg.out_dir) / ".lock"
    sweep = locks.holder_if_live(lock)
    if sweep is not None:
        raise InUseError(f"{cfg.out_dir} is in use: {sweep.describe()} holds {lock} and runs every run of its grid. "
                         f"Nothing was changed. {_SWEEP_ADVICE}")


@contextlib.contextmanager
def _stage_lock(cfg: Any, path: Path, kind: str, wait: bool) -> Iterator[None]:
    """Hold a stage's lock unless a sweep of another process holds the whole folder (checked before, so that a
    refusal changes nothing, and after, since a sweep may have started in between)."""
    advice = "Wait for it to finish: the result is then read back, not recomputed."
    _refuse_if_a_sweep_holds(cfg)
    with locks.hold(path, kind, what=kind, advice=advice, wait=wait):
        _refuse_if_a_sweep_holds(cfg)
        yield


def _refuse_if_stages_are_busy(cfg: Any) -> None:
    """Stop when `--one-run` processes work in the folder (live stage locks of other processes; stale ones go)."""
    if not train.is_main_process():
        return
    out = Path(cfg.out_dir)
    paths = [out / "pretrain" / ".lock", *sorted((out / "pretrain").glob("seed*/.lock")),
             *sorted((out / "runs").glob("*.lock"))]
    busy = [f"{holder.describe()} holds {path}" for path in paths if (holder := locks.holder_if_live(path))]
    if busy:
        raise InUseError(f"{out} is in use by --one-run processes: {'; '.join(busy)}. Nothing was changed. Wait for "
                         "them to finish, then run the sweep again: it reads their results back.")


@contextlib.contextmanager
def _stage_record(cfg: Any, stage: str, folder: Path, stem: str | None) -> Iterator[None]:
    """Refuse an interrupted stage made with other settings; record this one's settings until its result is stored."""
    problem = _record_problem(cfg, stage, folder, stem)
    if problem:
        raise StoredResultError(problem)
    record = _record(folder, stem)
    if train.is_main_process():
        write_json_atomic(record, _settings(cfg, stage))
    yield
    if train.is_main_process():
        record.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------------
# The decorators
# ---------------------------------------------------------------------------------------------------------------------

def holds_folder(sweep: Callable[..., list[dict]]) -> Callable[..., list[dict]]:
    """Decorate a protocol's `sweep(cfg, ...)`: every check first (module docstring), then `<out_dir>/.lock` held
    for the whole sweep.

    Raises:
        StoredResultError: stored results (or an interrupted stage) of the grid made with other settings.
        NotReadyError: the out dir, the device or an input is not usable (every problem at once).
        InUseError: another live process works in the out dir.
    """
    @functools.wraps(sweep)
    def run(cfg: Any, *args, **kwargs) -> list[dict]:
        found = stored_problems(cfg)
        if found:
            raise StoredResultError("\n".join(found))
        out = Path(cfg.out_dir)
        runs_left = sum(not (out / "runs" / f"{run_name(**r)}.json").exists() for r in _grid(cfg))
        starts_left = any(not (protocol.start_dir(cfg, s) / "result.json").exists() for s in _start_seeds(cfg))
        check_before_work(cfg, starts_left, runs_left)
        _refuse_if_stages_are_busy(cfg)  # before the lock, so that a refusal changes nothing
        with _on_rank0(locks.hold(out / ".lock", "a sweep", what=str(out), advice=_SWEEP_ADVICE)):
            _refuse_if_stages_are_busy(cfg)  # and after: a --one-run may have started in between
            return sweep(cfg, *args, **kwargs)

    return run


def pretrain_stage(pretrain: Callable[..., dict]) -> Callable[..., dict]:
    """Decorate a protocol's `pretrain(cfg, seed, ...)`: a stored start network is read back as before; otherwise
    every check first, then `<start_dir>/.lock` (waiting while another process pre-trains into that folder)."""
    signature = inspect.signature(pretrain)

    @functools.wraps(pretrain)
    def run(cfg: Any, *args, **kwargs) -> dict:
        bound = signature.bind(cfg, *args, **kwargs)
        bound.apply_defaults()
        folder = protocol.start_dir(cfg, bound.arguments["seed"])
        if (folder / "result.json").exists():
            return pretrain(cfg, *args, **kwargs)
        check_before_work(cfg, True, 0)
        with _on_rank0(_stage_lock(cfg, folder / ".lock", f"pre-training into {folder}", wait=True)):
            with _stage_record(cfg, protocol.PRETRAIN, folder, None):
                return pretrain(cfg, *args, **kwargs)

    return run


def posttrain_stage(post_train: Callable[..., dict]) -> Callable[..., dict]:
    """Decorate a protocol's `post_train(cfg, granularity, seed, ...)`: a stored run is read back as before;
    otherwise every check first, then `<out_dir>/runs/<run>.lock` (another process on the same run: stop at once)."""
    signature = inspect.signature(post_train)

    @functools.wraps(post_train)
    def run(cfg: Any, *args, **kwargs) -> dict:
        bound = signature.bind(cfg, *args, **kwargs)
        bound.apply_defaults()
        run_args = {k: v for k, v in bound.arguments.items() if k in ("granularity", "omega", "seed", "target")}
        stored = protocol.stored_run(cfg, **run_args)  # checks the arguments first; refuses other settings
        if stored is not None:
            return stored
        name, folder = run_name(**run_args), Path(cfg.out_dir) / "runs"
        check_before_work(cfg, False, 1)
        with _on_rank0(_stage_lock(cfg, folder / f"{name}.lock", f"post-training run {name}", wait=False)):
            with _stage_record(cfg, protocol.POSTTRAIN, folder, name):
                return post_train(cfg, *args, **kwargs)

    return run
