"""Lesions (course_lib.lesion): each lesion against a copy of the network built independently by module surgery or
zeroed weights, the prefix cache against the plain forward pass, reproducible draws; the lesion command's parts."""

import copy

import pytest
import torch
from nets import randomize_bn
from torch import nn

from course_lib import data, judging, lesion, linearize, models
from course_lib.errors import ConfigError


def _resnet(plain: bool = False, seed: int = 0) -> models.CifarResNet:
    torch.manual_seed(seed)
    return randomize_bn(models.cifar_resnet(14, plain=plain), seed).eval()  # 2 blocks a stage: identity and widening blocks


def _plain_net(seed: int = 0, linear_layer: int | None = None) -> models.PlainConvNet:
    """A tiny channel-wise-linearized deploy net: random slopes, a third of each layer's channels frozen linear."""
    torch.manual_seed(seed)
    deploy = models.repvgg_deploy(randomize_bn(models.repvgg("A0", 10, cifar=True, width_mult=0.125), seed).eval())
    net = linearize.to_prelu(deploy, "channel")
    gen = torch.Generator().manual_seed(seed)
    for i, (_, prelu) in enumerate(linearize.prelu_modules(net)):
        with torch.no_grad():
            prelu.alpha.copy_(torch.rand(prelu.num_channels, generator=gen) * 0.5)
        linear = torch.arange(prelu.num_channels) % 3 == i % 3  # about a third linear, every layer mixed
        if i == linear_layer:
            linear[:] = True
        linearize.freeze_mask(prelu, linear)
    return net.eval()


def _images(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8), torch.randint(0, 10, (n,),
                                                                                                   generator=gen)


def _batch(n: int = 6) -> torch.Tensor:
    images, labels = _images(n)
    return next(iter(data.CifarLoader(images, labels, n, train=False)))[0]


# ---------------------------------------------------------------------------------------------------------------------
# The units
# ---------------------------------------------------------------------------------------------------------------------

def test_units_are_the_blocks_of_a_resnet_and_the_shape_keeping_layers_of_a_plain_net():
    assert lesion.lesion_units(_resnet(), "block") == [f"layer{s}.{i}" for s in (1, 2, 3) for i in (0, 1)]
    net = _plain_net()
    nonlinear, layer = lesion.lesion_units(net, "nonlinear"), lesion.lesion_units(net, "layer")
    assert len(nonlinear) == 22  # every conv + PReLU layer of the A-family deploy net
    # A0 in CIFAR form: stages (1, 2, 4, 14, 1); the first layer of every stage changes the width (stage 1 keeps
    # 6 channels at stride 1, so its first layer keeps the shape too): 2 + 3 + 13 layers qualify.
    assert len(layer) == 18 and set(layer) < set(nonlinear)
    assert "features.0" not in layer and nonlinear[-1] not in layer


def test_a_lesion_that_does_not_fit_the_network_is_a_clear_error():
    with pytest.raises(ConfigError, match="needs a PlainConvNet"):
        lesion.lesion_units(_resnet(), "layer")
    with pytest.raises(ConfigError, match="unknown lesion kind"):
        lesion.lesion_units(_resnet(), "branch")
    with pytest.raises(ConfigError, match="out of range"):
        lesion.lesioned_forward(_resnet(), _batch(), [6], "block")


# ---------------------------------------------------------------------------------------------------------------------
# Each lesion against an independent computation
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, kind", [(lambda: _resnet(), "block"), (lambda: _resnet(plain=True), "block"),
                                         (lambda: _plain_net(), "nonlinear"), (lambda: _plain_net(), "layer")])
def test_deleting_nothing_changes_nothing(build, kind):
    net, x = build(), _batch()
    with torch.no_grad():
        assert torch.equal(lesion.lesioned_forward(net, x, [], kind), net(x))


@pytest.mark.parametrize("block", [0, 1, 2, 5])  # identity blocks (0, 1, 5) and a widening option-A block (2)
def test_deleting_a_block_equals_zeroing_its_branch(block):
    net, x = _resnet(), _batch()
    zeroed = copy.deepcopy(net)
    blocks = [b for stage in (zeroed.layer1, zeroed.layer2, zeroed.layer3) for b in stage]
    with torch.no_grad():
        blocks[block].bn2.weight.zero_()
        blocks[block].bn2.bias.zero_()  # the branch outputs exactly 0: relu(0 + shortcut(x))
        expected = zeroed(x)
        got = lesion.lesioned_forward(net, x, [block], "block")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("blocks", [(2,), (1, 4)])
def test_deleting_a_block_of_the_plain_twin_replaces_it_by_its_shortcut_map(blocks):
    net, x = _resnet(plain=True), _batch()
    cut = copy.deepcopy(net)
    stages = (cut.layer1, cut.layer2, cut.layer3)
    for b in blocks:
        stage = stages[b // 2]
        stage[b % 2] = stage[b % 2].shortcut  # module surgery: the block is gone, its shortcut map stays
    with torch.no_grad():
        assert torch.equal(lesion.lesioned_forward(net, x, blocks, "block"), cut(x))


@pytest.mark.parametrize("unit", [0, 3, 21])
def test_the_nonlinear_part_lesion_equals_zeroing_the_nonlinear_filters(unit):
    # Closed form: zero the conv filters (weights and bias) of the layer's nonlinear channels; their pre-activation
    # is then 0 and PReLU(0) = 0, while the linear channels are untouched.
    net, x = _plain_net(), _batch()
    name = lesion.lesion_units(net, "nonlinear")[unit]
    expected_net = copy.deepcopy(net)
    index = int(name.split(".")[1])
    conv, prelu = expected_net.features[index], expected_net.features[index + 1]
    nonlinear = prelu.nonlinear_mask()
    assert nonlinear.any() and not nonlinear.all()
    with torch.no_grad():
        conv.weight[nonlinear] = 0.0
        conv.bias[nonlinear] = 0.0
        torch.testing.assert_close(lesion.lesioned_forward(net, x, [unit], "nonlinear"), expected_net(x),
                                   rtol=0, atol=1e-6)


def test_the_nonlinear_part_lesion_of_a_fully_linear_layer_changes_nothing():
    net, x = _plain_net(linear_layer=5), _batch()
    with torch.no_grad():
        assert torch.equal(lesion.lesioned_forward(net, x, [5], "nonlinear"), net(x))
        assert not torch.equal(lesion.lesioned_forward(net, x, [4], "nonlinear"), net(x))


def test_the_layer_lesion_equals_the_identity_map():
    net, x = _plain_net(), _batch()
    names = lesion.lesion_units(net, "layer")
    chosen = [0, 7, 17]
    cut = copy.deepcopy(net)
    for i in chosen:
        index = int(names[i].split(".")[1])
        cut.features[index], cut.features[index + 1] = nn.Identity(), nn.Identity()
    with torch.no_grad():
        assert torch.equal(lesion.lesioned_forward(net, x, chosen, "layer"), cut(x))


# ---------------------------------------------------------------------------------------------------------------------
# The prefix cache, the draws, the summaries
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, kind", [(lambda: _resnet(), "block"), (lambda: _plain_net(), "nonlinear")])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_prefix_cache_gives_the_accuracy_of_the_uncached_forward(build, kind, channels_last):
    net = build()
    images, labels = _images(40)
    n_units = len(lesion.lesion_units(net, kind))
    sets = [(), (0,), (n_units - 1,), (1, 3), (3, 1), (2, 4, 5)]
    cached = lesion.lesion_accuracies(net, images, labels, sets, kind, batch_size=16, channels_last=channels_last)
    assert cached["unique_sets"] == 5 and cached["n_images"] == 40
    model = copy.deepcopy(net)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = data.CifarLoader(images, labels, 16, train=False, channels_last=channels_last)
    for s, acc in zip(sets, cached["accuracies"]):
        hits = sum((lesion.lesioned_forward(model, x, s, kind).argmax(1) == y).sum().item() for x, y in loader)
        assert acc == hits / 40
    with torch.no_grad():
        assert cached["intact"] == sum((model(x).argmax(1) == y).sum().item() for x, y in loader) / 40
    assert cached["accuracies"][0] == cached["intact"]


def test_random_draws_are_reproducible_from_the_seed():
    first = lesion.random_lesions(27, 4, 10, seed=3)
    assert first == lesion.random_lesions(27, 4, 10, seed=3)
    assert first != lesion.random_lesions(27, 4, 10, seed=4)
    assert all(len(set(s)) == 4 and list(s) == sorted(s) and max(s) < 27 for s in first)
    assert lesion.random_lesions(5, 5, 2) == [(0, 1, 2, 3, 4)] * 2
    with pytest.raises(ConfigError):
        lesion.random_lesions(5, 6, 1)


def test_the_curve_caps_k_at_the_units_and_repeats_from_its_seed():
    net = _resnet()
    images, labels = _images(8)
    curve = lesion.lesion_curve(net, images, labels, "block", max_k=10, draws=3, seed=1, batch_size=8)
    assert [p["k"] for p in curve["random"]] == [1, 2, 3, 4, 5, 6]
    assert curve["random"][-1]["sets"] == [[0, 1, 2, 3, 4, 5]] * 3
    assert len(curve["single"]["accuracies"]) == 6
    assert curve["single"]["mean_drop"] == pytest.approx(curve["intact"] - sum(curve["single"]["accuracies"]) / 6)
    again = lesion.lesion_curve(net, images, labels, "block", max_k=10, draws=3, seed=1, batch_size=8)
    assert again == curve


def test_the_draw_summary_is_the_median_range_and_the_interval_of_the_mean():
    summary = lesion.draw_summary([0.5, 0.7, 0.6, 0.9])
    interval = judging.paired_interval([0.5, 0.7, 0.6, 0.9])
    assert (summary["median"], summary["min"], summary["max"]) == (pytest.approx(0.65), 0.5, 0.9)
    assert (summary["mean"], summary["low"], summary["high"]) == (interval["mean"], interval["low"], interval["high"])


def test_the_paired_drop_is_the_interval_of_per_net_differences():
    first = [{"single": {"mean_drop": d}} for d in (0.1, 0.2, 0.3)]
    second = [{"single": {"mean_drop": d}} for d in (0.0, 0.1, 0.1)]
    assert lesion.paired_drop(first, second) == judging.paired_interval([0.1 - 0.0, 0.2 - 0.1, 0.3 - 0.1])
    with pytest.raises(ConfigError):
        lesion.paired_drop(first, second[:2])


def test_the_retained_share_is_the_margin_above_chance_kept_by_one_lesion():
    curve = {"intact": 0.5, "single": {"accuracies": [0.5, 0.3, 0.1]}}  # kept: all, half, nothing
    assert lesion.retained_share(curve) == pytest.approx(0.5)
    other = {"intact": 0.9, "single": {"accuracies": [0.9, 0.9, 0.1]}}
    paired = lesion.paired_drop([other], [curve], "retained_share")
    assert paired["mean"] == pytest.approx(2 / 3 - 1 / 2)
    with pytest.raises(ConfigError, match="not above chance"):
        lesion.retained_share({"intact": 0.1, "single": {"accuracies": [0.1]}})


# ---------------------------------------------------------------------------------------------------------------------
# The lesion command's parts (course_lib.lesion_study)
# ---------------------------------------------------------------------------------------------------------------------

def _save_twins(folder, depth: int = 8, seeds=(0, 1)) -> None:
    for seed in seeds:
        for plain in (False, True):
            net = _resnet(plain=plain, seed=seed) if depth == 14 else models.cifar_resnet(depth, plain=plain)
            path = folder / f"{'plain' if plain else 'resnet'}{depth}-seed{seed}" / "model.pt"
            path.parent.mkdir(parents=True)
            torch.save(net.state_dict(), path)
            (path.parent / "result.json").write_text('{"test_accuracy": 0.5, "config": {"epochs": 2, "n_train": 64}}')


def _twins_config(tmp_path, data_dir, **overrides):
    from course_lib import lesion_study

    settings = dict(twins_depth=8, twins_n_images=20, twins_draws=2, batch_size=10,
                    scratch_dir=str(tmp_path / "scratch"), out_dir=str(tmp_path / "out"), data_dir=str(data_dir))
    return lesion_study.lesion_config("smoke", **{**settings, **overrides})


def test_the_twins_part_without_its_nets_is_one_clear_error(tmp_path, data_dir):
    from course_lib import lesion_study
    from course_lib.errors import CourseError

    with pytest.raises(CourseError, match="no trained ResNet-8 / plain-8 pair .* from-scratch"):
        lesion_study.run_part(_twins_config(tmp_path, data_dir), "twins")
    (tmp_path / "scratch" / "resnet8-seed0").mkdir(parents=True)  # a ResNet without its plain twin is no pair
    torch.save(models.cifar_resnet(8).state_dict(), tmp_path / "scratch" / "resnet8-seed0" / "model.pt")
    (tmp_path / "scratch" / "resnet8-seed0" / "result.json").write_text("{}")
    with pytest.raises(CourseError, match="no trained ResNet-8"):
        lesion_study.run_part(_twins_config(tmp_path, data_dir), "twins")
    with pytest.raises(CourseError, match="unknown lesion part"):
        lesion_study.run_part(_twins_config(tmp_path, data_dir), "vgg")


def test_the_twins_part_measures_both_nets_of_each_seed_and_pairs_them(tmp_path, data_dir):
    from course_lib import lesion_study

    _save_twins(tmp_path / "scratch", seeds=(0, 1, 2))
    (tmp_path / "scratch" / "plain8-seed2" / "result.json").unlink()  # still training: not a pair yet
    assert lesion_study.scratch_pairs(tmp_path / "scratch", 8) == [0, 1]
    cfg = _twins_config(tmp_path, data_dir)
    record = lesion_study.run_part(cfg, "twins", progress=False)
    assert record["complete"] and set(record["entries"]) == {"resnet8-seed0", "plain8-seed0", "resnet8-seed1",
                                                             "plain8-seed1"}
    assert [e["seed"] for e in record["entries"].values()] == [0, 0, 1, 1]
    entry = record["entries"]["plain8-seed1"]["block"]
    assert record["entries"]["plain8-seed1"]["plain"] and entry["units"] == ["layer1.0", "layer2.0", "layer3.0"] and entry["n_images"] == 20
    assert [p["k"] for p in entry["random"]] == [1, 2, 3]
    # The stored numbers are the library's on the same images and net.
    images, labels = data.load_cifar("cifar10", "test", root=data_dir)
    net = models.cifar_resnet(8, plain=True)
    net.load_state_dict(torch.load(tmp_path / "scratch" / "plain8-seed1" / "model.pt"))
    direct = lesion.lesion_curve(net.eval(), images[:20], labels[:20], "block", max_k=3, draws=2, batch_size=10)
    assert entry["single"] == direct["single"] and entry["random"] == direct["random"]
    paired = record["comparison"]["block"]["mean_drop"]
    res = [record["entries"][f"resnet8-seed{s}"]["block"]["single"]["mean_drop"] for s in (0, 1)]
    pla = [record["entries"][f"plain8-seed{s}"]["block"]["single"]["mean_drop"] for s in (0, 1)]
    assert paired == judging.paired_interval([p - r for p, r in zip(pla, res)])
    assert set(record["provenance"]) >= {"git_commit", "torch"}
    text = lesion_study.reading(record)
    assert "plain minus resnet, paired by seed (2 independent pair(s))" in text and "ResNet-8" in text
    assert "(2 epochs on 64 training images)" in text and "prediction 'resnet keeps more" in text
    table = lesion_study.curve_table({"plain": entry})
    assert "3 units" in table and "k =  2" in table and "k =  4" not in table
    average = lesion_study.mean_curve([record["entries"]["plain8-seed0"]["block"], entry])
    assert average["intact"] == pytest.approx((record["entries"]["plain8-seed0"]["block"]["intact"]
                                               + entry["intact"]) / 2)
    assert average["random"][1]["n"] == 2 and average["random"][1]["low"] is not None
    sides = lesion_study.side_curves(record, "block")
    assert set(sides) == {"resnet8 (mean of 2 nets)", "plain8 (mean of 2 nets)"}
    assert sides["plain8 (mean of 2 nets)"] == average


def test_a_part_resumes_with_its_next_net_and_reads_back_a_complete_file(tmp_path, data_dir, monkeypatch):
    from course_lib import lesion_study, results

    _save_twins(tmp_path / "scratch", seeds=(0,))
    cfg = _twins_config(tmp_path, data_dir)
    calls = []
    real = lesion.lesion_curve

    def interrupted(net, *args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(net.layer1[0].residual)
        return real(net, *args, **kwargs)

    monkeypatch.setattr(lesion, "lesion_curve", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lesion_study.run_part(cfg, "twins", progress=False)
    partial = results.read_json(lesion_study.part_path(cfg, "twins"))
    assert not partial["complete"] and list(partial["entries"]) == ["resnet8-seed0"]
    calls.clear()
    monkeypatch.setattr(lesion, "lesion_curve", lambda net, *a, **k: (calls.append(net.layer1[0].residual),
                                                                       real(net, *a, **k))[1])
    record = lesion_study.run_part(cfg, "twins", progress=False)
    assert calls == [False] and record["complete"]  # only the plain twin was measured again
    calls.clear()
    assert lesion_study.run_part(cfg, "twins", progress=False) == record and calls == []
    changed = lesion_study.run_part(_twins_config(tmp_path, data_dir, twins_draws=3), "twins", progress=False)
    assert len(calls) == 2 and changed["config"]["twins_draws"] == 3  # other settings: measured again


def test_the_lesion_command_writes_the_twins_part(tmp_path, data_dir, capsys):
    from course_lib import cli

    _save_twins(tmp_path / "scratch", seeds=(0,))
    status = cli.main(["lesion", "--mode", "smoke", "--part", "twins", "--out", str(tmp_path / "out"),
                       "--scratch-dir", str(tmp_path / "scratch"), "--set", "twins_depth=8", "twins_n_images=20",
                       f"data_dir={data_dir}"])
    out = capsys.readouterr().out
    assert status == 0 and (tmp_path / "out" / "twins.json").exists()
    assert "plain8-seed0" in out and "single deletions: median" in out
    assert cli.main(["lesion", "--mode", "smoke", "--part", "twins", "--out", str(tmp_path / "out2"),
                     "--scratch-dir", str(tmp_path / "nothing")]) == 2
    assert "error: no trained ResNet-20" in capsys.readouterr().err


def test_every_lesion_profile_sets_exactly_the_fields_of_its_config():
    import dataclasses

    from course_lib import lesion_study, profiles

    names = {f.name for f in dataclasses.fields(lesion_study.LesionConfig)} - {"mode"}
    for mode in profiles.MODES:
        assert set(profiles.sizes("lesion", mode)) == names
    with pytest.raises(ConfigError, match="unknown lesion setting"):
        lesion_study.lesion_config("smoke", draws=3)


def test_the_lesion_plots_draw_every_curve_headless():
    import matplotlib

    matplotlib.use("Agg")
    from course_lib import viz

    net = _resnet()
    images, labels = _images(8)
    curve = lesion.lesion_curve(net, images, labels, "block", max_k=3, draws=3, batch_size=8)
    fig = viz.plot_lesion_curves({"a": curve, "b": curve})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["a", "b"] and fig.axes[0].get_xlabel().startswith("units deleted")
    fig = viz.plot_single_lesions({"a": curve})
    assert len(fig.axes[0].lines[0].get_xdata()) == 6


def _save_extracted(folder, seeds=(0,), target: float = 14.0) -> None:
    """The files of a finished CIFAR experiment in smoke settings: each seed's deploy net and its two linearized runs
    (random slopes standing in for trained ones), as `experiments.load_post_trained` reads them."""
    from course_lib import results

    for seed in seeds:
        net = _plain_net(seed)
        deploy = (folder / "pretrain" / f"seed{seed}" / "deploy.pt")
        deploy.parent.mkdir(parents=True)
        plain = models.repvgg_deploy(randomize_bn(models.repvgg("A0", 10, cifar=True, width_mult=0.125), seed).eval())
        torch.save({"model": plain.state_dict()}, deploy)
        for granularity in ("channel", "layer"):
            run = linearize.to_prelu(plain, granularity) if granularity == "layer" else net
            name = results.run_name(granularity, seed, target=target)
            (folder / "runs").mkdir(exist_ok=True)
            torch.save({"model": run.state_dict()}, folder / "runs" / f"{name}.pt")
            results.write_json_atomic(folder / "runs" / f"{name}.json", {"napl": 14.0, "test_accuracy": 0.1})


def test_the_extracted_part_lesions_both_variants_and_pairs_them_by_seed(tmp_path, data_dir):
    from course_lib import lesion_study
    from course_lib.errors import CourseError

    cfg = lesion_study.lesion_config("smoke", cifar_dir=str(tmp_path / "cifar"), out_dir=str(tmp_path / "out"),
                                     extracted_seeds=(0, 1), extracted_n_images=10, batch_size=10, max_k=2,
                                     extracted_draws=1, data_dir=str(data_dir))
    with pytest.raises(CourseError, match=r"extracted nets are not there .*`python -m course_lib cifar --mode smoke"):
        lesion_study.run_part(cfg, "extracted")
    _save_extracted(tmp_path / "cifar", seeds=(0, 1))
    record = lesion_study.run_part(cfg, "extracted", progress=False)
    assert set(record["entries"]) == {"channel-seed0", "layer-seed0", "channel-seed1", "layer-seed1"}
    layer = record["entries"]["layer-seed0"]
    assert len(layer["nonlinear"]["units"]) == 22 and len(layer["layer"]["units"]) == 18
    channel = record["entries"]["channel-seed0"]["nonlinear"]
    direct = lesion.lesion_curve(_plain_net(0), *[t[:10] for t in data.load_cifar("cifar10", "test", root=data_dir)],
                                 "nonlinear", max_k=2, draws=1, batch_size=10)
    assert channel["single"] == direct["single"]
    drops = [record["entries"][f"channel-seed{s}"]["nonlinear"]["single"]["mean_drop"]
             - record["entries"][f"layer-seed{s}"]["nonlinear"]["single"]["mean_drop"] for s in (0, 1)]
    assert record["comparison"]["nonlinear"]["mean_drop"] == judging.paired_interval(drops)
    assert lesion_study.compare(record) == record["comparison"]
    assert "channel minus layer" in lesion_study.reading(record) and "2 independent start net(s)" in \
        lesion_study.reading(record)
    assert "layer-seed1" in lesion_study.extracted_table(record)


def test_a_prediction_is_read_from_the_side_of_zero_its_interval_lies_on():
    above, below, across = ({"mean": m, "low": lo, "high": hi} for m, lo, hi in ((1, 0.5, 1.5), (-1, -1.5, -0.5),
                                                                                 (0, -1, 1)))
    assert judging.prediction_reading(above, +1, "cpu") == "supported"
    assert judging.prediction_reading(below, +1, "cpu") == "reversed"
    assert judging.prediction_reading(below, -1, "full") == "supported"
    assert judging.prediction_reading(across, +1, "cpu") == "inconclusive"
    assert judging.prediction_reading({"mean": 1, "low": None, "high": None}, +1, "cpu").startswith("inconclusive")
    assert judging.prediction_reading(above, +1, "smoke").startswith("not judged")
    assert judging.prediction_reading(None, +1, "cpu").startswith("not judged")
