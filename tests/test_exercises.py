"""The exercises' checkers (course_lib.exercises): for every exercise the notebook's solution passes, the student
copy's stub is "not attempted yet", an error is shown with the hint, and each plausible wrong answer below fails with
a message that names what differed."""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from course_lib import exercises, student

F = nn.functional
ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def _imports(notebook: Path) -> str:
    """The import statements of a notebook's code cells (the names its solution cells may use)."""
    lines = []
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or "%" in source:  # the Colab cell holds %pip lines
            continue
        tree = ast.parse(source)
        lines += [ast.get_source_segment(source, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


def _functions(notebook: Path, make_stubs: bool) -> dict[str, Callable]:
    """The functions of a notebook's solution cells (or of their stubs), defined with the notebook's imports."""
    namespace: dict = {}
    exec(_imports(notebook), namespace)
    for source in student.solution_sources(notebook):
        exec(compile(student.stub_source(source) if make_stubs else source, notebook.name, "exec"), namespace)
    return namespace


def _notebook(name: str) -> Path:
    return ROOT / "notebooks" / f"{exercises.EXERCISES[name].notebook}.ipynb"


NAMES = list(exercises.EXERCISES)


# --- plausible wrong answers: (function, a phrase the failure message must contain) --------------------------------


def _solve_pair(W, b, z1, z2, with_bias=True):
    shift = b if with_bias else torch.zeros_like(b)
    return torch.linalg.solve(W, z1 - shift), torch.linalg.solve(W, z2 - shift)


def _collision(W, b, first, second, with_bias=True):
    z1, z2 = torch.ones(W.shape[0], dtype=F64), torch.ones(W.shape[0], dtype=F64)
    z1[0], z2[0] = first, second
    return _solve_pair(W, b, z1, z2, with_bias)


def _relu_wide(W, b, eps, scale=None, b2=None, c=1.0, width=2):
    d = W.shape[0]
    eye = torch.eye(d, dtype=F64)
    if width == 1:  # only the branch: no room for the copy of x
        return W, b, eye, torch.zeros(d, dtype=F64)
    scale = 1 / eps if scale is None else scale
    b2 = -torch.ones(d, dtype=F64) / eps if b2 is None else b2
    hidden = torch.cat([W, eps * eye]), torch.cat([b, torch.full((d,), c, dtype=F64)])
    return *hidden, torch.cat([eye, scale * eye], 1), b2


def _smooth_wide(W, b, eps, phi, c, mistake):
    t = torch.tensor(c, dtype=F64, requires_grad=True)
    value = phi(t)
    (slope,) = torch.autograd.grad(value, t)
    phi_c, dphi_c = value.item(), slope.item()
    d, eye = W.shape[0], torch.eye(W.shape[0], dtype=F64)
    scale = 1 / eps if mistake == "no φ'(c)" else 1 / (eps * dphi_c)
    offset = 1.0 if mistake == "φ(c) = 1" else phi_c
    centre = phi_c if mistake == "φ(c) for c" else c
    return (torch.cat([W, eps * eye]), torch.cat([b, torch.full((d,), centre, dtype=F64)]),
            torch.cat([eye, scale * eye], 1), torch.full((d,), -offset * scale, dtype=F64))


def _slopes_like(x, alpha):
    return alpha.reshape(1, -1, *([1] * (x.dim() - 2)))


def _freeze(alpha, frozen, tol=0.01, crossing=True, keep=True, write=True, absolute=True):
    near = ((alpha - 1).abs() if absolute else alpha - 1) < tol
    new = (frozen if keep else torch.zeros_like(frozen)) | near | ((alpha >= 1) if crossing else near)
    return (torch.where(new, torch.ones_like(alpha), alpha) if write else alpha.clone()), new


def _relu_channels(model, input_shape, per_unit=False):
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, out: seen.append(out[0].numel() if per_unit else out.shape[1]))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model.eval()(torch.zeros(input_shape))
    for h in hooks:
        h.remove()
    return seen


def _fuse(block, identity="bn", centre=True, means=True):
    def fold(kernel, bn):
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - (bn.running_mean * scale if means else 0)

    k3, b3 = fold(block.conv3x3[0].weight, block.conv3x3[1])
    pad = (1, 1, 1, 1) if centre else (0, 2, 0, 2)
    k1, b1 = fold(F.pad(block.conv1x1[0].weight, pad), block.conv1x1[1])
    kernel, bias = k3 + k1, b3 + b1
    if block.identity is not None and identity != "missing":
        dirac = torch.zeros_like(kernel)
        dirac[range(block.out_ch), range(block.out_ch), 1, 1] = 1.0
        kid, bid = fold(dirac, block.identity) if identity == "bn" else (dirac, 0)
        kernel, bias = kernel + kid, bias + bid
    return kernel.detach(), bias.detach()


def _histogram(fractions, mix=True):
    h = torch.zeros(len(fractions) + 1, dtype=F64)
    h[0] = 1.0
    for p in fractions:
        h = ((1 - p) * h if mix else h) + p * torch.roll(h, 1)
    return h


def _mean_binomial(fractions):
    p, n = sum(fractions) / len(fractions), len(fractions)
    return torch.tensor([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)], dtype=F64)


WRONG: dict[str, list[tuple[Callable, str]]] = {
    "identity_block": [
        (lambda d: (torch.zeros(d, d, dtype=F64), torch.ones(d, dtype=F64)), "adds the same nonzero vector"),
        (lambda d: (torch.eye(d, dtype=F64), torch.zeros(d, dtype=F64)), "depends on x"),
        (lambda d: (torch.zeros(d, d, dtype=F64), -torch.ones(d, 1, dtype=F64)), "b̄ has the wrong shape"),
    ],
    "collision": [
        (lambda W, b: _collision(W, b, -1.0, -1.0), "the same input"),
        (lambda W, b: _collision(W, b, 1.0, 2.0), "the outputs differ in coordinate 0"),
        (lambda W, b: _collision(W, b, -1.0, -2.0, with_bias=False), "the outputs differ"),
    ],
    "relu_wide_layer": [
        (lambda W, b, eps: _relu_wide(W, b, eps, scale=1.0), "these differ: A"),
        (lambda W, b, eps: _relu_wide(W, b, eps, b2=torch.zeros(W.shape[0], dtype=F64)), "these differ: b2"),
        (lambda W, b, eps: _relu_wide(W, b, eps, c=0.0, b2=torch.zeros(W.shape[0], dtype=F64)),
         "these differ: b1, b2"),
        (lambda W, b, eps: _relu_wide(W, b, eps, width=1), "the hidden layer has width 2d"),
    ],
    "wide_layer": [
        (lambda W, b, eps, phi, c: _smooth_wide(W, b, eps, phi, c, "no φ'(c)"), "A differs"),
        (lambda W, b, eps, phi, c: _smooth_wide(W, b, eps, phi, c, "φ(c) = 1"), "b2 differs"),
        (lambda W, b, eps, phi, c: _smooth_wide(W, b, eps, phi, c, "φ(c) for c"), "b1 differs"),
    ],
    "channel_prelu": [
        (lambda x, alpha: x.clamp(min=0) + alpha * x.clamp(max=0), "at negative inputs"),  # slopes on the last dim
        (lambda x, alpha: _slopes_like(x, alpha) * x.clamp(min=0) + x.clamp(max=0), "positive"),
        (lambda x, alpha: torch.relu(x), "at negative inputs"),
    ],
    "l05_penalty": [
        (lambda alpha, frozen: (1 - alpha).abs().sqrt().sum(), "at frozen slopes"),
        (lambda alpha, frozen: (1 - alpha[~frozen]).abs().sum(), "that is L1"),
        (lambda alpha, frozen: float((1 - alpha[~frozen]).abs().sqrt().sum().detach()), "not a tensor"),
        (lambda alpha, frozen: (1 - alpha[~frozen]).sqrt().sum(), "the value differs"),  # NaN above 1
    ],
    "freeze": [
        (lambda alpha, frozen, tol=0.01: _freeze(alpha, frozen, tol, crossing=False), "the crossing rule"),
        (lambda alpha, frozen, tol=0.01: _freeze(alpha, frozen, tol, keep=False), "only grows"),
        (lambda alpha, frozen, tol=0.01: _freeze(alpha, frozen, tol, write=False), "must hold exactly 1"),
        (lambda alpha, frozen, tol=0.01: _freeze(alpha, frozen, tol, absolute=False), "frozen but should not be"),
    ],
    "slope_counts": [
        (lambda model, shape: (sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)),
                               len(_relu_channels(model, shape))), "sum of the convs' output channels"),
        (lambda model, shape: (sum(_relu_channels(model, shape, per_unit=True)), len(_relu_channels(model, shape))),
         "channel slopes"),
        (lambda model, shape: (sum(_relu_channels(model, shape)), 1), "layer slopes"),
    ],
    "fuse_block": [
        (lambda block: _fuse(block, identity="plain"), "the identity branch"),
        (lambda block: _fuse(block, identity="missing"), "the identity branch"),
        (lambda block: _fuse(block, centre=False), "away from the centre tap"),
        (lambda block: _fuse(block, means=False), "the running means μ are missing"),
    ],
    "merge_convs": [
        (lambda w1, b1, w2, b2: (F.conv_transpose2d(w2, w1), b1 + b2), "bias differs"),
        (lambda w1, b1, w2, b2: (F.conv2d(w1.transpose(0, 1), w2, padding=w2.shape[-1] - 1).transpose(0, 1),
                                 b2 + w2.sum((2, 3)) @ b1), "cross-correlation"),
        (lambda w1, b1, w2, b2: (torch.einsum("aihw,ibhw->abhw", w2, w1), b2 + w2.sum((2, 3)) @ b1),
         "kernel has the wrong shape"),  # tap by tap, as if kernels multiplied like matrices
    ],
    "plain_napl": [
        (lambda fractions: sum(fractions) + 1, "off by one"),
        (lambda fractions: sum(fractions) / len(fractions), "the mean of the fractions"),
        (lambda fractions: float(len(fractions)), "counts the layers"),
    ],
    "resnet_napl": [
        (lambda kinds: float(len(kinds)), "every ReLU counted 1"),
        (lambda kinds: len(kinds) / 2, "every ReLU counted ½"),
        (lambda kinds: kinds.count("branch") / 2, "the trunk ReLUs are missing"),
    ],
    "skip_apl_napl": [
        (lambda w, d: (d / 2, d / 2), "APL: the value differs: your APL weighs the skip ½"),
        (lambda w, d: (d * w**d / (w**d + 1),) * 2, "NAPL: the value differs: your NAPL counts every path once"),
        (lambda w, d: (d * w * d / (w * d + 1), d / 2), "w·depth paths"),
    ],
    "chain_histogram": [
        (lambda fractions: _histogram(fractions, mix=False), "sums to"),
        (_mean_binomial, "Binomial(L, p̄)"),
        (lambda fractions: _histogram(fractions).flip(0), "reversed"),
    ],
}
WRONG_CASES = [pytest.param(name, i, id=f"{name}-{i}") for name, wrongs in WRONG.items() for i in range(len(wrongs))]


def test_every_exercise_has_at_least_two_wrong_answers_here():
    assert set(WRONG) == set(exercises.EXERCISES)
    assert all(len(w) >= 2 for w in WRONG.values())
    assert len(exercises.EXERCISES) >= 12


@pytest.mark.parametrize("name", NAMES)
def test_the_notebooks_solution_passes(name, capsys):
    fn = _functions(_notebook(name), make_stubs=False)[exercises.EXERCISES[name].function]
    result = exercises.check(name, fn)
    assert result and result.status == exercises.PASSED, result.message
    assert capsys.readouterr().out.startswith(f"✓ {name}: all ")


@pytest.mark.parametrize("name", NAMES)
def test_the_student_stub_is_not_attempted_yet(name, capsys):
    fn = _functions(_notebook(name), make_stubs=True)[exercises.EXERCISES[name].function]
    result = exercises.check(name, fn)
    assert not result and result.status == exercises.NOT_ATTEMPTED
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("name, i", WRONG_CASES)
def test_a_wrong_answer_fails_naming_what_differed(name, i, capsys):
    fn, phrase = WRONG[name][i]
    result = exercises.check(name, fn)
    assert result.status == exercises.FAILED, result.message
    assert phrase in result.message and "expected: " in result.message and "got: " in result.message
    assert exercises.EXERCISES[name].hint in result.message
    assert capsys.readouterr().out.strip() == result.message


def test_an_error_is_shown_with_the_line_and_the_hint():
    def broken(d):
        raise ValueError("a bug of the learner")

    result = exercises.check("identity_block", broken)
    assert result.status == exercises.ERROR and not result
    assert "raised ValueError: a bug of the learner" in result.message
    assert 'raise ValueError("a bug of the learner")' in result.message  # the line it came from
    assert exercises.EXERCISES["identity_block"].hint in result.message


def test_a_stub_that_is_only_partly_written_is_an_error_not_unattempted():
    def partly(d):
        if d > 1:
            raise NotImplementedError
        return torch.zeros(1, 1, dtype=F64), -torch.ones(1, dtype=F64)

    result = exercises.check("identity_block", partly)
    assert result.status == exercises.ERROR and "still a stub" in result.message


def test_an_unreadable_answer_and_a_non_function_are_reported():
    result = exercises.check("skip_apl_napl", lambda w, d: "four")
    assert result.status == exercises.FAILED and "expected 2 values" in result.message
    assert exercises.check("plain_napl", 3.0).status == exercises.ERROR


def test_the_checker_does_not_see_changes_the_learner_makes_to_its_inputs():
    def vandal(fractions):
        value = sum(fractions)
        fractions.clear()
        return value

    assert exercises.check("plain_napl", vandal)


def test_hint_prints_the_registered_hint(capsys):
    exercises.hint("freeze")
    assert exercises.EXERCISES["freeze"].hint in capsys.readouterr().out
