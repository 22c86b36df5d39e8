"""Post-training to a target NAPL (course_lib.targeting): the NAPL weights, the gated freezing, the ω controller, and
a targeted run that is interrupted in its recovery phase and resumes to the same result."""

import pytest
import torch

from course_lib import experiments, linearize, models, paths, results, targeting, train


def _plain_prelu(granularity="channel"):
    return linearize.to_prelu(models.plain_cifar_net("A0", 10, 0.125), granularity)


def _resnet20_prelu(granularity="channel"):
    return linearize.to_prelu(models.fold_batchnorm(models.cifar_resnet(20).eval()), granularity)


def test_napl_weights_are_path_probabilities():
    assert targeting.napl_weights(_plain_prelu()) == pytest.approx([1.0] * 22)
    names = [name for name, _ in linearize.prelu_modules(_resnet20_prelu())]
    weights = dict(zip(names, targeting.napl_weights(_resnet20_prelu())))
    assert weights["relu"] == pytest.approx(1.0)  # the stem lies on every path
    assert all(w == pytest.approx(0.5) for n, w in weights.items() if n.endswith("relu1"))  # inside a branch
    assert all(w == pytest.approx(1.0) for n, w in weights.items() if n.endswith("relu2"))  # after the addition
    assert sum(weights.values()) == pytest.approx(14.5)


@pytest.mark.parametrize("build", [_plain_prelu, _resnet20_prelu])
def test_fast_napl_equals_the_traced_napl_on_random_masks(build):
    net = build()
    weights = targeting.napl_weights(net)
    generator = torch.Generator().manual_seed(0)
    for _, m in linearize.prelu_modules(net):
        m.frozen |= torch.rand(m.frozen.shape, generator=generator) < 0.4
    assert targeting.fast_napl(net, weights) == pytest.approx(paths.napl(net), abs=1e-9)


def test_gated_freezing_lands_on_the_target_without_undershooting():
    for granularity, target in (("channel", 17.3), ("layer", 17.0)):
        net = _plain_prelu(granularity)
        for _, m in linearize.prelu_modules(net):
            m.alpha.data.fill_(0.995)  # every slope may freeze now
        controller = targeting.NaplController(targeting.napl_weights(net), target, omega_start=0.01)
        controller.after_step(net)
        assert controller.reached and controller.omega == 0.0 and controller.reached_step == 1
        assert target - 0.15 <= paths.napl(net) <= target + 0.15
        frozen = sum(int(m.frozen.sum()) for _, m in linearize.prelu_modules(net))
        controller.after_step(net)  # after the target nothing freezes any more
        assert sum(int(m.frozen.sum()) for _, m in linearize.prelu_modules(net)) == frozen


def test_omega_rises_while_above_the_target_and_the_state_round_trips():
    net = _plain_prelu()
    controller = targeting.NaplController(targeting.napl_weights(net), 5.0, omega_start=0.01, growth=2.0, every=3)
    for _ in range(7):
        controller.after_step(net)  # slopes at 0: nothing freezes, NAPL stays 22
    assert controller.omega == pytest.approx(0.04) and [s for s, _ in controller.trajectory] == [0, 3, 6]
    assert controller.penalty(net).item() == pytest.approx(0.04 * linearize.l05_penalty(net).item())
    copy = targeting.NaplController(controller.weights, 5.0, omega_start=1.0)
    copy.load_state_dict(controller.state_dict())
    assert copy.state_dict() == controller.state_dict()


def test_slope_distribution_counts_unfrozen_slopes_near_one():
    net = _plain_prelu("layer")
    modules = [m for _, m in linearize.prelu_modules(net)]
    modules[0].alpha.data.fill_(0.95)
    modules[1].frozen.fill_(True)
    d = targeting.slope_distribution(net)
    assert d["unfrozen"] == 21 and d["within_0.1"] == 1 and sum(d["histogram"]) == 21


def test_a_targeted_run_interrupted_in_recovery_resumes_to_the_same_result(tmp_path, data_dir, monkeypatch):
    small = dict(n_train=2048, n_test=200, amp_bf16=False, channels_last=False, compile=False, data_dir=str(data_dir),
                 omegas=(), targets=(16.0,), granularities=("channel",), posttrain_epochs=2, recovery_epochs=2)
    whole = experiments.cifar_config("smoke", out_dir=str(tmp_path / "a"), **small)
    reference = experiments.sweep(whole, progress=False)
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path / "b"), **small)
    original, saved = train.save_checkpoint_atomic, []

    def crash_after_first_recovery_epoch(path, state):
        original(path, state)
        saved.append(path.name)
        if path.name.endswith(".recovery.ckpt.pt"):
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_checkpoint_atomic", crash_after_first_recovery_epoch)
    with pytest.raises(KeyboardInterrupt):
        experiments.sweep(cfg, progress=False)
    monkeypatch.setattr(train, "save_checkpoint_atomic", original)
    name = results.run_name("channel", 0, target=16.0)
    assert (tmp_path / "b" / "runs" / f"{name}.linearized.pt").exists()  # linearization had finished
    resumed = experiments.sweep(cfg, progress=False)
    assert resumed[0]["recovery_history"]["resumed_from_epoch"] == 1
    for a, b in zip(reference, resumed):
        assert a["reached"] and b["reached"]
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-9)
        assert a["test_accuracy_linearized"] == pytest.approx(b["test_accuracy_linearized"], abs=1e-9)
    leftovers = [p.name for p in (tmp_path / "b" / "runs").glob("*.pt") if ".ckpt." in p.name or ".linearized." in p.name]
    assert not leftovers
