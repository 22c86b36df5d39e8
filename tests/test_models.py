import pytest
import torch
from nets import randomize_bn

from course_lib import data, models


@pytest.mark.parametrize("name", models.list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    net = models.create(name, num_classes=10).train()
    size = 64 if name == "repvgg_a2" else 32
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("depth, expected", [(20, 269_722), (56, 853_018)])
def test_cifar_resnet_parameter_counts(depth, expected):
    assert models.count_parameters(models.cifar_resnet(depth)) == expected
    assert models.count_parameters(models.cifar_resnet(depth, plain=True)) == expected


def test_bad_depth_is_a_value_error():
    with pytest.raises(ValueError, match="6n\\+2"):
        models.cifar_resnet(21)


def test_plain_twin_has_no_shortcut_effect():
    torch.manual_seed(0)
    res, plain = models.cifar_resnet(20).eval(), models.cifar_resnet(20, plain=True).eval()
    plain.load_state_dict(res.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(res(x), plain(x))


def test_repvgg_a2_deploy_parameter_count():
    deploy = models.repvgg_deploy(models.repvgg("A2", num_classes=1000).eval())
    assert models.count_parameters(deploy) == 25_499_944  # RepVGG paper: 25.49 M
    assert sum(isinstance(m, torch.nn.ReLU) for m in deploy.modules()) == 22


@pytest.mark.parametrize("arch, cifar, size", [("A0", True, 32), ("A2", False, 64)])
def test_reparameterize_matches_train_form(arch, cifar, size):
    torch.manual_seed(0)
    net = models.repvgg(arch, num_classes=10, cifar=cifar).eval()
    randomize_bn(net)
    deploy = models.repvgg_deploy(net)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref, out = net(x), deploy(x)
    assert (out - ref).abs().max() / ref.abs().max() < 1e-5


def test_width_multiplier_scales_widths():
    assert models.repvgg_widths("A2") == [64, 96, 192, 384, 1408]
    assert models.repvgg_widths("A0", 0.25) == [12, 12, 24, 48, 320]


def test_pretrained_checkpoint_loads_strictly(data_dir):
    net = models.load_pretrained_cifar_resnet(20, root=data_dir)
    assert models.count_parameters(net) == 269_722 and not net.training


def test_strict_loading_names_the_bad_keys():
    net = models.cifar_resnet(20)
    state = net.state_dict()
    state["linear.weight"] = torch.zeros(3, 64)
    del state["conv1.weight"]
    with pytest.raises(RuntimeError, match="conv1.weight") as err:
        models.pretrained.load_state_dict_strict(net, state)
    assert "linear.weight" in str(err.value)


def test_pretrained_resnet56_scores_92_percent_on_lossless_test(data_dir):
    net = models.load_pretrained_cifar_resnet(56, root=data_dir)
    images, labels = data.load_cifar("cifar10", "test", root=data_dir, subset="lossless")
    with torch.no_grad():
        correct = sum((net(x).argmax(1) == y).sum().item()
                      for x, y in data.CifarLoader(images, labels, 250, train=False))
    assert correct / len(labels) >= 0.92  # 92.6% measured (shared/data/README.md)
