"""Several tasks at once in worker processes, until a deadline: how the GPU campaign shares one GPU between runs.

`run_until(function, tasks, workers, deadline)` starts `workers` processes (spawned: safe after CUDA is in use), each
of which calls `function(*task.args)` for one task after another. A task may name another task that must have
finished first (`Task.after`, e.g. a seed's start network before that seed's runs); it is handed out only then. At
the deadline every worker gets SIGINT (a `KeyboardInterrupt` inside it, so `finally` blocks run and atomic writes
leave no temporary files), then has `grace_s` seconds to exit before it is killed. The caller's own Ctrl-C (or a
SIGTERM) stops the workers the same way. Each process keeps its data and compiled graphs, so a task that follows
another of the same shape in a worker reuses them.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Task", "Outcome", "run_until"]


@dataclass(frozen=True)
class Task:
    """One call `function(*args)`; `after` is the key of a task that must have finished first (None: none)."""

    key: str
    args: tuple
    after: str | None = None


@dataclass
class Outcome:
    """What `run_until` got done: results of the finished tasks, errors of the failed ones, and the rest."""

    done: dict[str, object] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # key -> the error, with the end of its traceback
    unfinished: list[str] = field(default_factory=list)  # started and stopped, or never started
    stopped: str | None = None  # None: every task ended; "deadline"; "interrupted" (the caller's Ctrl-C)


def _worker(function: Callable, tasks, events, threads: int | None) -> None:
    """A worker process: take tasks until told to stop (None), report start, result or error of each."""
    # A process started in the background by a shell (`nohup ... &`) inherits SIGINT ignored, and Python then installs
    # no KeyboardInterrupt handler: restore it, or the parent's stop signal would be ignored until the kill.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        while (task := tasks.get()) is not None:
            key, args = task
            events.put(("start", key, os.getpid()))
            try:
                events.put(("done", key, function(*args)))
            except Exception as exc:  # reported to the parent, which goes on with the other tasks
                tail = "".join(traceback.format_exception(exc)[-3:])
                events.put(("failed", key, f"{type(exc).__name__}: {exc}\n{tail}"))
    except KeyboardInterrupt:  # the parent's stop signal: the interrupted task resumes at a later call
        pass


def run_until(function: Callable, tasks: list[Task], workers: int, deadline: float, *, grace_s: float = 20.0,
              threads: int | None = None, log: Callable[[str], None] = print) -> Outcome:
    """Run every task in `workers` processes, each once its `after` task is done, until they end or `deadline`.

    Args:
        function: a module-level function (the workers import it by name).
        tasks: the tasks, in the order they are handed out once ready; keys are unique.
        workers: processes (at most one per task).
        deadline: `time.time()` at which running tasks are interrupted and no new one starts.
        grace_s: seconds an interrupted worker has to exit before it is killed.
        threads: `torch.set_num_threads` in every worker (None: torch's default).
        log: where one line per finished or failed task goes.

    Returns:
        The `Outcome`. A task whose `after` failed is counted failed without running.
    """
    ctx = multiprocessing.get_context("spawn")
    task_queue, events = ctx.Queue(), ctx.Queue()
    outcome, waiting, running = Outcome(), list(tasks), {}
    handed_out: set[str] = set()
    processes = [ctx.Process(target=_worker, args=(function, task_queue, events, threads), daemon=True)
                 for _ in range(max(1, min(workers, len(tasks))))] if tasks else []
    for p in processes:
        p.start()

    def hand_out_ready() -> None:
        for task in list(waiting):
            if task.after in outcome.failed:
                outcome.failed[task.key] = f"not run: {task.after} failed"
                waiting.remove(task)
            elif task.after is None or task.after in outcome.done:
                task_queue.put((task.key, task.args))
                handed_out.add(task.key)
                waiting.remove(task)

    def handle(event: tuple) -> None:
        kind, key, payload = event
        if kind == "start":
            running[key] = payload
        elif kind == "done":
            running.pop(key, None)
            outcome.done[key] = payload
            log(f"finished {key}")
        else:
            running.pop(key, None)
            outcome.failed[key] = payload
            log(f"failed {key}: {payload.splitlines()[0]}")

    previous = _raise_on_sigterm()
    try:
        while True:
            hand_out_ready()
            if len(outcome.done) + len(outcome.failed) == len(tasks):
                break
            if time.time() >= deadline:
                outcome.stopped = "deadline"
                break
            try:
                handle(events.get(timeout=min(0.5, max(0.01, deadline - time.time()))))
            except queue.Empty:
                pass
            dead = {p.pid: p.exitcode for p in processes if not p.is_alive()}
            for key, pid in [(k, pid) for k, pid in running.items() if pid in dead]:  # a worker died (OOM, crash)
                running.pop(key)
                outcome.failed[key] = f"its worker process {pid} died (exit code {dead[pid]})"
            if not any(p.is_alive() for p in processes):
                outcome.stopped = outcome.stopped or "workers died"
                break
    except KeyboardInterrupt:
        outcome.stopped = "interrupted"
    finally:
        _stop_workers(processes, task_queue, events, handle, stop=outcome.stopped is not None, grace_s=grace_s)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    outcome.unfinished = [t.key for t in tasks if t.key not in outcome.done and t.key not in outcome.failed]
    return outcome


def _raise_on_sigterm():
    """While the workers run, SIGTERM (a job scheduler's stop) stops them like Ctrl-C; returns the old handler (None
    outside the main thread, where handlers cannot be set)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _stop_workers(processes, task_queue, events, handle: Callable, stop: bool, grace_s: float) -> None:
    """End every worker: SIGINT when `stop` (else a None task each), drain their events, kill those that outlast
    `grace_s` (a worker only exits once its queued events are read, so they are read here)."""
    for p in processes:
        if not stop:
            task_queue.put(None)
        elif p.is_alive():
            os.kill(p.pid, signal.SIGINT)
    end = time.time() + grace_s
    while any(p.is_alive() for p in processes) and time.time() < end:
        try:
            handle(events.get(timeout=0.2))  # a task that finished just before the signal still counts
        except queue.Empty:
            pass
    for p in processes:
        if p.is_alive():
            p.kill()
        p.join(timeout=5)
    while True:
        try:
            handle(events.get_nowait())
        except (queue.Empty, OSError, ValueError, EOFError):
            break
