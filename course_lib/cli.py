"""The course's one command line: `python -m course_lib <command> [options]`.

Each command is the `main(argv, prog)` of one module, imported only when it runs (so `--help` is quick). Expected
failures (`errors.CourseError`: a wrong setting, a missing file) end in one line `error: <message>` on stderr and exit
status 2; `--debug` before the command shows the traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from .errors import CourseError

__all__ = ["Command", "COMMANDS", "main"]

@dataclass(frozen=True)
class Command:
    """A command of the course's command line: its name, the module whose `main(argv, prog)` runs it, what it does."""

    name: str
    module: str
    about: str


COMMANDS = {c.name: c for c in (
    Command("cifar", "course_lib.experiments", "channel- vs layer-wise linearization on CIFAR (notebooks 04 and 05)"),
    Command("from-scratch", "course_lib.from_scratch", "a CIFAR ResNet and its plain twin trained from scratch (notebook 01)"),
    Command("lesion", "course_lib.lesion_study", "Veit's lesion study: delete blocks/layers at test time (notebook 05)"),
    Command("imagenet", "course_lib.imagenet", "RepVGG-A2 on ImageNet, also under torchrun (notebook 06)"),
    Command("reproduce", "course_lib.reproduce", "execute every notebook with papermill in one run mode"),
    Command("bench", "course_lib.bench", "the course's training loop against a textbook PyTorch loop"),
    Command("gpu-campaign", "course_lib.campaign", "bench + a CIFAR-10 sweep on one GPU in a time budget, with pass/fail"),
    Command("envcheck", "course_lib.envcheck", "check this environment: packages, dot, widgets, device, data"),
    Command("notebook-meta", "course_lib.notebook_meta", "sync the notebooks' badges, Colab cells, README block"),
    Command("student", "course_lib.student", "generate the student copies (notebooks/student/) from the solutions"),
    Command("report", "course_lib.report", "the README's results block, from the stored references"),
    Command("figures", "course_lib.figures", "the README's main-result figure, from the stored reference"),
    Command("histograms", "course_lib.histograms", "path-length histograms of extracted nets vs a ResNet (notebook 03)"),
    Command("site", "course_lib.website", "build the course website from the notebooks executed in smoke mode"),
)}
PROG = "python -m course_lib"


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {c.about}" for name, c in COMMANDS.items())
    return (f"usage: {PROG} [--debug] <command> [options]\n\ncommands:\n{rows}\n\n"
            f"`{PROG} <command> --help` describes a command's options.")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for an expected failure or an unknown command)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv[:1]
    argv = argv[1:] if debug else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}\n\n{_usage()}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command].module)
    try:
        return int(module.main(rest, prog=f"{PROG} {command}") or 0)
    except CourseError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
