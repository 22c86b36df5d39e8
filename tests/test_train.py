import math

import pytest
import torch
from torch import nn

from course_lib import data, linearize, models, train


def _toy_loaders(n=96, batch=32):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return (data.CifarLoader(images, labels, batch, train=True), data.CifarLoader(images, labels, 40, train=False))


def test_cosine_lr_goes_from_one_to_zero():
    assert train.cosine_lr(0, 100) == 1.0
    assert train.cosine_lr(50, 100) == pytest.approx(0.5)
    assert train.cosine_lr(100, 100) == pytest.approx(0.0, abs=1e-12)


def test_no_weight_decay_on_bn_biases_and_slopes():
    net = linearize.to_prelu(models.cifar_resnet(20), "channel")
    decay, no_decay, slopes = train.param_groups(net, 5e-4)[:3]
    decay_ids = {id(p) for p in decay["params"]}
    for name, p in net.named_parameters():
        expect_decay = p.ndim > 1 and not name.endswith("alpha")
        assert (id(p) in decay_ids) == expect_decay, name
    assert len(slopes["params"]) == 19 and slopes["weight_decay"] == 0.0
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 5e-4


def test_evaluate_counts_every_image_once():
    train_loader, test_loader = _toy_loaders()
    result = train.evaluate(models.plain_cifar_net("A0", 10, 0.125), test_loader)
    assert result["n"] == 96 and 0.0 <= result["accuracy"] <= 1.0 and math.isfinite(result["loss"])


def test_fit_lowers_the_training_loss():
    torch.manual_seed(0)
    train_loader, _ = _toy_loaders(n=64, batch=32)
    net = models.plain_cifar_net("A0", 10, 0.125)
    history = train.fit(net, train_loader, None, train.TrainConfig(epochs=8, lr=0.05, weight_decay=0.0),
                        progress=False)
    losses = [e["train_loss"] for e in history["epochs"]]
    assert losses[-1] < losses[0]


def test_fit_resumes_from_its_checkpoint_exactly(tmp_path):
    cfg = train.TrainConfig(epochs=3, lr=0.002)
    torch.manual_seed(0)
    start = linearize.to_prelu(models.plain_cifar_net("A0", 10, 0.125), "channel")
    penalty = lambda m: 0.1 * linearize.l05_penalty(m)  # noqa: E731
    freeze = lambda m, opt: linearize.freeze_near_linear(m, 0.01, opt)  # noqa: E731

    straight = _clone(start)
    train.fit(straight, _toy_loaders()[0], None, cfg, penalty=penalty, after_step=freeze, progress=False)

    interrupted = _clone(start)
    calls = {"n": 0}
    original = train.save_checkpoint_atomic

    def stop_after_first_epoch(path, state):
        original(path, state)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    train.save_checkpoint_atomic = stop_after_first_epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            train.fit(interrupted, _toy_loaders()[0], None, cfg, penalty=penalty, after_step=freeze,
                      checkpoint=tmp_path / "ck.pt", progress=False)
    finally:
        train.save_checkpoint_atomic = original
    resumed = _clone(start)
    history = train.fit(resumed, _toy_loaders()[0], None, cfg, penalty=penalty, after_step=freeze,
                        checkpoint=tmp_path / "ck.pt", progress=False)
    assert history["resumed_from_epoch"] == 1 and len(history["epochs"]) == 3
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.isfinite(a.float()).all() and torch.equal(a, b)


def _clone(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def test_autocast_is_a_no_op_when_disabled():
    with train.autocast(torch.device("cpu"), False):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_layer_wise_slope_step_is_the_mean_of_the_channel_steps():
    """One plain SGD step: the tied (layer-wise) slope moves by the average of the untied (channel-wise) moves."""
    torch.manual_seed(0)
    base = models.plain_cifar_net("A0", 10, 0.125)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    moved = {}
    for granularity in ("channel", "layer"):
        net = linearize.to_prelu(base, granularity)
        for _, m in linearize.prelu_modules(net):
            m.alpha.data.fill_(0.3)
        cfg = train.TrainConfig(epochs=1, lr=0.01, momentum=0.0, nesterov=False)
        opt = train.make_optimizer(net, cfg)
        loss = nn.functional.cross_entropy(net(x), y) + 0.1 * linearize.l05_penalty(net, layer_scale="channels")
        loss.backward()
        opt.step()
        moved[granularity] = [m.alpha.detach().mean() - 0.3 for _, m in linearize.prelu_modules(net)]
    for a, b in zip(moved["channel"], moved["layer"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
