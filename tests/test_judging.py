"""The rules that judge a result (course_lib.judging) and the claims built on them, on fixture summaries: paired
gaps at matched NAPL with Student-t intervals, misses, no interpolation, verdict categories with their scale."""

import pytest

from course_lib import claims, judging

T_975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student-t quantiles, from a table


def test_paired_interval_against_a_hand_computed_example():
    # diffs 1, 2, 3: mean 2, sd 1, se 1/sqrt(3); t(0.975, 2) = 4.3027
    i = judging.paired_interval([1.0, 2.0, 3.0])
    half = T_975[2] / 3 ** 0.5
    assert i["mean"] == pytest.approx(2.0) and i["n"] == 3
    assert i["low"] == pytest.approx(2 - half) and i["high"] == pytest.approx(2 + half)
    two = judging.paired_interval([0.01, 0.03])  # sd = 0.01414, se = 0.01
    assert two["low"] == pytest.approx(0.02 - T_975[1] * 0.01) and two["high"] == pytest.approx(0.02 + T_975[1] * 0.01)
    assert judging.paired_interval([0.5])["low"] is None
    assert judging.clarity(i) == 0 and judging.clarity(judging.paired_interval([1.0, 1.1, 0.9])) == 1
    assert judging.clarity(judging.paired_interval([-1.0, -1.1, -0.9])) == -1


CONFIG = {"network": "repvgg", "arch": "A0", "width_mult": 0.125, "dataset": "cifar10", "n_train": 10000,
          "pretrain_epochs": 10, "posttrain_epochs": 2, "recovery_epochs": 1, "mode": "cpu"}


def _runs(gaps: dict[float, list[float]], config: dict = CONFIG, missed: tuple = ()) -> list[dict]:
    """Targeted runs: for each target, one (channel, layer) pair per seed whose accuracies differ by the given gaps
    (the same at both moments, + 0.01 after recovery)."""
    runs = []
    for target, per_seed in gaps.items():
        for seed, gap in enumerate(per_seed):
            for g, acc in (("channel", 0.6 + gap), ("layer", 0.6)):
                runs.append({"granularity": g, "seed": seed, "target": target, "omega": None, "napl": target,
                             "reached": (g, target, seed) not in missed, "test_accuracy_linearized": acc - 0.01,
                             "test_accuracy": acc, "config": config})
    return runs


def _starts(n: int = 3, napl: float = 22.0, config: dict = CONFIG) -> list[dict]:
    return [{"test_accuracy": 0.7, "test_accuracy_train_form": 0.7, "napl": napl, "parameters_deploy": 1,
             "config": config} for _ in range(n)]


def test_gaps_are_paired_by_seed_and_misses_are_left_out():
    runs = _runs({4.0: [0.02, 0.03, 0.04]}, missed=(("layer", 4.0, 2),))
    summary = judging.summarize(runs, _starts())
    (gap,) = summary["paired_gaps"]
    assert gap["seeds"] == [0, 1] and gap["recovered"]["diffs"] == pytest.approx([0.02, 0.03])
    assert gap["linearized"]["mean"] == pytest.approx(0.025)
    assert summary["missed_runs"] == ["layer-target4-seed2"]
    assert summary["baseline"]["n_starts"] == 3


def test_fixed_omega_runs_give_curves_and_no_interpolated_gap():
    runs = [{"granularity": g, "seed": 0, "omega": 0.1, "napl": n, "test_accuracy": a, "config": CONFIG}
            for g, n, a in (("channel", 10.0, 0.7), ("channel", 3.0, 0.6), ("layer", 7.0, 0.5))]
    summary = judging.summarize(runs, _starts(1))
    assert summary["paired_gaps"] == [] and set(summary["curves"]) == {"channel", "layer"}
    assert "curves only" in judging.verdict(summary)


@pytest.mark.parametrize("gaps, category", [
    ({4.0: [0.02, 0.03, 0.025], 14.0: [0.0, 0.01, -0.01]}, "reproduced"),   # clear at 4, holds 0 at 14
    ({4.0: [-0.02, -0.03, -0.025], 14.0: [0.01, 0.0, 0.0]}, "not reproduced"),  # a clearly reversed gap
    ({4.0: [0.05, -0.04, 0.01]}, "inconclusive"),                             # interval across 0
    ({4.0: [0.05]}, "inconclusive"),                                          # a single pair: no interval
    ({21.8: [0.05, 0.06, 0.07]}, "not run"),                                  # nothing linearized: not informative
])
def test_gap_reading_categories(gaps, category):
    summary = judging.summarize(_runs(gaps), _starts())
    assert judging.gap_reading(judging.informative_gaps(summary))[0] == category


def test_verdict_names_its_scale_and_both_moments():
    text = judging.verdict(judging.summarize(_runs({4.0: [0.02, 0.03, 0.025]}), _starts()))
    assert "plain RepVGG-A0 at width ×0.125" in text and "3 independently pre-trained net(s)" in text
    assert "cpu mode" in text and "linearized +" in text and "recovered +" in text
    assert "Reading after recovery: reproduced" in text


def _evidence(summary: dict, dataset: str = "cifar10", network: str = "repvgg", mode: str = "cpu"):
    return claims.Evidence(dataset, network, mode, f"{dataset}_{network}_{mode}", summary, [])


def _finding(findings, start):
    return next(f for f in findings if f.claim.startswith(start))


def test_claims_use_the_rules_and_carry_the_scale():
    ev = _evidence(judging.summarize(_runs({4.0: [0.02, 0.03, 0.025], 14.0: [0.0, 0.01, -0.01]}), _starts()))
    findings = claims.assess([ev])
    main = _finding(findings, "Variable-depth")
    assert main.verdict == "reproduced" and "cpu mode" in main.scale
    assert _finding(findings, "The channel-wise advantage grows").verdict == "reproduced"  # 4 vs 14, paired
    assert _finding(findings, "ImageNet").verdict == "not run"
    assert {f.verdict for f in findings} <= set(claims.VERDICTS)
    assert _finding(findings, "Proposition 1").verdict == "illustrated"


def test_smoke_and_fixed_omega_evidence_never_judge():
    smoke = _evidence(judging.summarize(_runs({4.0: [0.05, 0.06, 0.07]}), _starts()), mode="smoke")
    fixed = _evidence(judging.summarize([{"granularity": "channel", "seed": 0, "omega": 0.1, "napl": 5.0,
                                          "test_accuracy": 0.7, "config": CONFIG}], _starts(1)))
    assert _finding(claims.assess([smoke, fixed]), "Variable-depth").verdict == "not run"


RESNET = {**CONFIG, "network": "resnet56"}


@pytest.mark.parametrize("resnet_gaps, verdict", [
    ({14.0: [0.0, 0.01, -0.01]}, "reproduced"),         # holds 0 where the plain net is clearly ahead
    ({14.0: [-0.05, -0.06, -0.055]}, "not reproduced"),  # clearly reversed: the gap has not vanished
    ({14.0: [0.05, 0.06, 0.055]}, "not reproduced"),     # clearly positive: not vanished either
])
def test_ablation_rule(resnet_gaps, verdict):
    plain = _evidence(judging.summarize(_runs({14.0: [0.02, 0.03, 0.025]}), _starts()))
    resnet = _evidence(judging.summarize(_runs(resnet_gaps, RESNET), _starts(3, 41.5, RESNET)), network="resnet56")
    finding = _finding(claims.assess([plain, resnet]), "From ResNet-56")
    assert finding.verdict == verdict
    assert "pre-training variance not covered" in finding.scale


def test_tv_distance_of_an_exact_binomial_is_zero():
    import math

    q = 0.3
    binom = [math.comb(22, k) * q ** k * (1 - q) ** (22 - k) for k in range(23)]
    assert claims._tv_to_binomial(binom, 22) == pytest.approx(0.0, abs=1e-12)
    assert claims._tv_to_binomial([0.0] * 5 + [1.0], 22) > 0.5  # a single spike is far from binomial


def test_markdown_table_has_one_row_per_claim():
    findings = claims.assess([])
    assert claims.to_markdown(findings).count("\n") == len(findings) + 1
    assert _finding(findings, "Channel-wise linearization adds").measured.count("7,808") == 1


def _channel_runs(accuracies: dict[float, list[float]]) -> list[dict]:
    """Channel-wise targeted runs: the given test accuracy per target and seed."""
    return [{"granularity": "channel", "seed": seed, "target": target, "napl": target, "reached": True,
             "test_accuracy": acc, "test_accuracy_linearized": acc, "config": CONFIG}
            for target, per_seed in accuracies.items() for seed, acc in enumerate(per_seed)]


def test_rise_compares_each_seed_with_the_next_higher_target():
    runs = _channel_runs({2.0: [0.40, 0.41, 0.42], 3.0: [0.52, 0.53, 0.55], 4.0: [0.50, 0.50, 0.51]})
    rise = judging.rise_at(runs, 3.0)
    assert (rise["target"], rise["above"]) == (3.0, 4.0)
    assert rise["interval"]["diffs"] == pytest.approx([0.02, 0.03, 0.04])
    half = T_975[2] * 0.01 / 3 ** 0.5  # diffs 0.02, 0.03, 0.04: sd 0.01
    assert rise["interval"]["low"] == pytest.approx(0.03 - half) and rise["clear"] == 1
    fall = judging.rise_at(_channel_runs({3.0: [0.40, 0.41, 0.42], 5.0: [0.50, 0.52, 0.51]}), 3.0)
    assert (fall["target"], fall["above"], fall["clear"]) == (3.0, 5.0, -1)
    assert judging.rise_at(_channel_runs({3.0: [0.5, 0.5]}), 3.0)["target"] is None  # no higher target


def test_cifar100_claims_read_only_their_napl_window_and_the_rise():
    gaps = {4.0: [0.02, 0.03, 0.025], 14.0: [-0.02, -0.03, -0.025]}  # clear at 4, clearly reversed at 14
    runs = _runs(gaps) + _channel_runs({3.0: [0.7, 0.71, 0.72]})
    ev = claims.Evidence("cifar100", "repvgg", "cpu", "cifar100_cpu", judging.summarize(runs, _starts()), runs)
    findings = claims.assess([ev])
    window = _finding(findings, "CIFAR-100: channel-wise is clearly better at NAPL 3–5")
    assert window.verdict == "reproduced" and "NAPL 3–5" in window.measured and "NAPL 14" not in window.measured
    rise = _finding(findings, "CIFAR-100: accuracy rises")
    # channel accuracy at 3 (0.70, 0.71, 0.72) minus at 4 (0.62, 0.63, 0.625): a clear rise
    assert rise.verdict == "reproduced" and "NAPL 3 minus at NAPL 4" in rise.measured
    assert _finding(claims.assess([]), "CIFAR-100: accuracy rises").verdict == "not run"


def test_the_full_profile_can_judge_both_cifar100_claims():
    from course_lib import experiments, protocol

    cfg = experiments.cifar_config("full", dataset="cifar100")
    coverage = claims.cifar100_coverage(cfg.targets)
    assert coverage["ready"] and coverage["gap_window"] == [3.0, 4.0, 5.0] and coverage["rise_pair"] == (3.0, 4.0)
    assert cfg.posttrain_epochs == 60 and len(cfg.seeds) >= 3  # the paper's CIFAR-100 post-training length
    plan = protocol.plan(cfg)
    assert plan["runs"] == len(cfg.targets) * len(cfg.seeds) * 2 and plan["starts"] == len(cfg.seeds)
    assert plan["max_passes"] == 3 * cfg.pretrain_epochs + plan["runs"] * (60 + cfg.recovery_epochs)
    assert not claims.cifar100_coverage([8.0, 14.0])["ready"] and claims.cifar100_coverage([])["rise_pair"] is None


def test_a_rise_is_read_only_near_its_napl():
    assert judging.rise_targets([2.0, 4.0, 8.0], 3.0) is None  # 2 and 4 are farther than RISE_WITHIN from 3
    assert judging.rise_targets([2.5, 4.0], 3.0) == (2.5, 4.0)
    assert judging.rise_targets([3.0], 3.0) is None  # no higher target


def test_a_sweep_whose_pairs_all_missed_says_so_not_fixed_omega():
    runs = _runs({14.5: [0.02, 0.03]}, missed=(("layer", 14.5, 0), ("layer", 14.5, 1)))
    text = judging.verdict(judging.summarize(runs, _starts(2)))
    assert "No paired gap: at every target one variant missed it" in text and "fixed-ω" not in text
