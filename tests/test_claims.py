"""Tests for course_lib.claims: the verdict rules, evidence collection and the table of notebook 07."""

from __future__ import annotations

import math

import pytest

from course_lib import claims, experiments, results


def _summary(gaps: list[tuple[float, float]], std: float = 0.002, seeds: int = 2, top: float = 22.0) -> dict:
    """A summary with matched-NAPL gaps [(napl, gap)], each variant with seed std `std`."""
    return {"baseline": {"napl": top, "test_accuracy": 0.8},
            "curves": {"channel": [{"n_seeds": seeds}], "layer": [{"n_seeds": seeds}]},
            "gaps_at_matched_napl": [{"napl": n, "gap": g, "omega": 0.1, "layer_accuracy": 0.5,
                                      "layer_accuracy_std": std, "channel_accuracy_interp": 0.5 + g,
                                      "channel_accuracy_std_interp": std} for n, g in gaps]}


def _evidence(summary: dict, dataset: str = "cifar10", network: str = "repvgg", mode: str = "cpu",
              runs: list | None = None) -> claims.Evidence:
    return claims.Evidence(dataset, network, mode, f"{dataset}_{network}_{mode}.json", summary, runs or [])


def _finding(findings: list[claims.Finding], start: str) -> claims.Finding:
    return next(f for f in findings if f.claim.startswith(start))


@pytest.mark.parametrize("gaps, verdict", [
    ([(16.0, 0.0), (8.0, 0.02), (2.0, 0.05)], "reproduced"),       # clear only below 12, widening
    ([(16.0, 0.02), (8.0, 0.03), (2.0, 0.05)], "partly"),          # clear above 12 as well
    ([(16.0, 0.0), (8.0, -0.02), (2.0, -0.05)], "not reproduced"),  # layer-wise ahead
])
def test_imagenet_gap_rule(gaps, verdict):
    findings = claims.assess([_evidence(_summary(gaps), dataset="imagenet")])
    assert _finding(findings, "ImageNet").verdict == verdict


def test_single_seed_and_smoke_runs_never_judge_a_claim():
    findings = claims.assess([_evidence(_summary([(8.0, 0.05), (2.0, 0.1)], seeds=1), dataset="imagenet"),
                              _evidence(_summary([(8.0, 0.05), (2.0, 0.1)]), dataset="cifar100", mode="smoke")])
    assert _finding(findings, "ImageNet").verdict == "not run yet"
    assert _finding(findings, "CIFAR-100").verdict == "not run yet"
    assert {f.verdict for f in findings} <= set(claims.VERDICTS)


def test_ablation_rule_compares_the_resnet_gap_with_the_plain_gap():
    plain = _evidence(_summary([(16.0, 0.01), (7.0, 0.03), (2.0, 0.04)]))
    vanishing = _evidence(_summary([(30.0, 0.001), (10.0, -0.001), (3.0, 0.03)], top=41.5), network="resnet56")
    smaller_but_clear = _evidence(_summary([(30.0, 0.01), (10.0, 0.01)], top=41.5), network="resnet56")
    reversed_gap = _evidence(_summary([(30.0, -0.05), (10.0, -0.02)], top=41.5), network="resnet56")
    larger = _evidence(_summary([(30.0, 0.05), (10.0, 0.06)], top=41.5), network="resnet56")
    for resnet, verdict in [(vanishing, "reproduced"), (smaller_but_clear, "partly"), (reversed_gap, "partly"),
                            (larger, "not reproduced")]:
        assert _finding(claims.assess([plain, resnet]), "From ResNet-56").verdict == verdict


def test_full_scale_evidence_is_preferred_to_cpu():
    cpu = _evidence(_summary([(8.0, -0.05)]), mode="cpu")
    full = _evidence(_summary([(16.0, 0.0), (8.0, 0.01), (2.0, 0.05)]), mode="full")
    finding = _finding(claims.assess([cpu, full]), "CIFAR-10:")
    assert finding.evidence == full.source


def test_tv_distance_of_an_exact_binomial_is_zero():
    q = 0.3
    binom = [math.comb(22, k) * q ** k * (1 - q) ** (22 - k) for k in range(23)]
    assert claims._tv_to_binomial(binom, 22) == pytest.approx(0.0, abs=1e-12)
    assert claims._tv_to_binomial([0.0] * 5 + [1.0], 22) > 0.5  # a single spike is far from binomial


def test_collect_evidence_reads_reference_files_and_run_folders(tmp_path):
    cfg = experiments.cifar_config("cpu", out_dir=str(tmp_path / "runs" / "04_cifar_cpu"))
    config = {**vars(cfg), "omegas": list(cfg.omegas), "seeds": list(cfg.seeds),
              "granularities": list(cfg.granularities)}
    results.write_json_atomic(tmp_path / "runs" / "04_cifar_cpu" / "pretrain" / "result.json",
                              {"config": config, "test_accuracy": 0.8, "test_accuracy_train_form": 0.8, "napl": 22.0,
                               "parameters_deploy": 1})
    for g, napl, acc in [("channel", 8.0, 0.7), ("layer", 8.0, 0.6)]:
        results.write_json_atomic(tmp_path / "runs" / "04_cifar_cpu" / "runs" / f"{g}.json",
                                  {"config": config, "granularity": g, "omega": 0.1, "seed": 0, "napl": napl,
                                   "test_accuracy": acc})
    reference = tmp_path / "reference"
    results.write_json_atomic(reference / "x.json", {"config": {"dataset": "cifar100", "mode": "full"},
                                                     "summary": _summary([(4.0, 0.05)])})
    found = claims.collect_evidence(reference, tmp_path / "runs")
    assert {(e.dataset, e.network, e.mode) for e in found} == {("cifar10", "repvgg", "cpu"), ("cifar100", "repvgg",
                                                                                              "full")}
    local = next(e for e in found if e.dataset == "cifar10")
    assert local.summary["gaps_at_matched_napl"][0]["gap"] == pytest.approx(0.1)


def test_markdown_table_has_one_row_per_claim():
    findings = claims.assess([])
    table = claims.to_markdown(findings)
    assert table.count("\n") == len(findings) + 1
    assert _finding(findings, "Proposition 1").verdict == "reproduced"
    assert _finding(findings, "Channel-wise linearization adds").measured.count("7,808") == 1
