"""Tests for course_lib.histograms (and `paths.histogram_moments`): distances and moments of path-length histograms
against closed forms, and the stored comparison of extracted nets with ResNet-20 (notebook 03, section 6)."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import cli, histograms, paths, protocol
from course_lib.errors import StoredResultError
from course_lib.results import REFERENCE_DIR


def _binomial(n: int, p: float) -> torch.Tensor:
    return torch.tensor([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)], dtype=torch.float64)


@pytest.mark.parametrize(("n", "p"), [(9, 0.5), (22, 0.3), (10, 0.85), (3, 0.1)])
def test_moments_of_a_binomial_are_its_closed_forms(n, p):
    m = histograms.moments(_binomial(n, p))
    assert m["mean"] == pytest.approx(n * p, abs=1e-12)
    assert m["variance"] == pytest.approx(n * p * (1 - p), abs=1e-12)
    assert m["std"] == pytest.approx(math.sqrt(n * p * (1 - p)), abs=1e-12)
    assert m["skewness"] == pytest.approx((1 - 2 * p) / math.sqrt(n * p * (1 - p)), abs=1e-10)
    mean, std, skew = paths.histogram_moments(_binomial(n, p), skewness=True)
    assert (mean, std**2, skew) == pytest.approx((m["mean"], m["variance"], m["skewness"]))


def test_histogram_moments_keeps_its_two_value_form():
    assert paths.histogram_moments([0, 0, 0, 1.0]) == pytest.approx((3.0, 0.0))  # what notebooks 05 and claims read
    assert len(paths.histogram_moments(_binomial(5, 0.5))) == 2


def test_a_spike_has_no_skewness():
    assert math.isnan(paths.histogram_moments([0, 0, 1.0], skewness=True)[2])
    assert histograms.moments([0, 0, 1.0]) == {"mean": 2.0, "variance": 0.0, "std": 0.0, "skewness": None}


def test_total_variation_closed_cases():
    assert histograms.total_variation([0, 1.0], [0, 0, 0, 1.0]) == 1.0  # two spikes at different lengths
    assert histograms.total_variation(_binomial(9, 0.5), _binomial(9, 0.5)) == 0.0  # a distribution with itself
    # by hand: |0.5 − 0.25| + |0.5 − 0.25| + |0 − 0.5| = 1, halved; lengths aligned by padding with zeros
    assert histograms.total_variation([0.5, 0.5], [0.25, 0.25, 0.5]) == pytest.approx(0.5)
    assert histograms.total_variation([0.2, 0.8], torch.tensor([0.6, 0.4])) == pytest.approx(0.4)
    p, q = _binomial(6, 0.3), _binomial(8, 0.6)
    assert histograms.total_variation(p, q) == pytest.approx(histograms.total_variation(q, p))


def _run(granularity: str, seed: int, hist: list[float]) -> dict:
    return {"granularity": granularity, "seed": seed, "napl": paths.histogram_moments(hist)[0], "reached": True,
            "path_length_histogram": hist}


def test_compare_runs_pairs_by_seed_and_gives_intervals():
    resnet = [0.5, 0.5]
    runs = [_run("channel", 0, [0.5, 0.5]), _run("layer", 0, [0, 1.0]),
            _run("channel", 1, [0.25, 0.75]), _run("layer", 1, [1.0, 0]), _run("channel", 7, [1.0])]
    out = histograms.compare_runs(runs, resnet)
    assert [s["seed"] for s in out["per_seed"]] == [0, 1] and out["unpaired_seeds"] == [7]
    assert [s["tv"]["channel-resnet"] for s in out["per_seed"]] == pytest.approx([0.0, 0.25])
    assert [s["tv"]["layer-resnet"] for s in out["per_seed"]] == pytest.approx([0.5, 0.5])
    assert [s["tv"]["channel-layer"] for s in out["per_seed"]] == pytest.approx([0.5, 0.75])
    tv = out["intervals"]["tv"]["channel-resnet"]
    half = 12.706204736174698 * math.sqrt(0.125 ** 2 * 2) / math.sqrt(2)  # t(0.975, 1) · sd / √n
    assert (tv["mean"], tv["low"], tv["high"], tv["n"]) == pytest.approx((0.125, 0.125 - half, 0.125 + half, 2))
    assert out["intervals"]["moments"]["layer"]["skewness"] is None  # spikes: no skewness
    assert out["resnet_moments"]["mean"] == 0.5


def test_stored_runs_at_napl_14_against_resnet_20():
    c = histograms.depth_comparison("cifar10_cpu", target=14.0)
    assert c["resnet"] == "ResNet-20" and c["resnet_napl"] == pytest.approx(14.5)
    assert len(c["per_seed"]) == 3 and c["unpaired_seeds"] == []
    for seed in c["per_seed"]:
        assert seed["moments"]["layer"]["variance"] == 0.0  # a fixed-depth net: one spike
        assert seed["moments"]["channel"]["variance"] > 1.0  # variable depth
        assert seed["tv"]["channel-resnet"] < seed["tv"]["layer-resnet"]
    assert "3 independently pre-trained net(s)" in c["scale"] and "git_commit" in c["provenance"]
    with pytest.raises(StoredResultError, match="choose one"):
        histograms.depth_comparison("cifar10_cpu")  # four targets


def test_write_and_load_a_comparison_and_the_command_line(tmp_path, capsys):
    protocol.export_reference(REFERENCE_DIR / "cifar10_cpu", "copy", reference_dir=tmp_path)
    path = histograms.write_depth_comparison("copy", target=14.0, reference_dir=tmp_path)
    assert path == tmp_path / "copy" / histograms.FILE
    stored = histograms.load_depth_comparison("copy", reference_dir=tmp_path)
    assert "TV(channel-wise, ResNet-20)" in histograms.format_table(stored)
    with pytest.raises(StoredResultError, match="histograms --name"):
        histograms.load_depth_comparison("missing", reference_dir=tmp_path)
    assert cli.main(["histograms", "--name", "no-such-reference"]) == 2
    assert "no reference sweep" in capsys.readouterr().err
    assert cli.main(["histograms", "--from", str(tmp_path / "empty"), "--name", "x"]) == 2


def _close(a, b) -> bool:
    """Nested dicts and lists equal, floats up to 1e-12."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def test_the_stored_napl_14_5_comparison_matches_its_runs():
    stored = histograms.load_depth_comparison("cifar10_cpu_napl14.5")
    fresh = histograms.depth_comparison("cifar10_cpu_napl14.5")
    assert stored["target"] == 14.5 and stored["resnet_napl"] == pytest.approx(14.5)
    assert stored["provenance"]["git_commit"] and "+dirty" not in stored["provenance"]["git_commit"]
    for key in ("per_seed", "intervals", "resnet_moments", "resnet_histogram", "runs", "scale"):
        assert _close(stored[key], fresh[key]), key
    assert len(stored["per_seed"]) == 3
