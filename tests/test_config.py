import pytest
import torch

from course_lib import config


def test_explicit_modes_pass_through(monkeypatch):
    monkeypatch.setenv(config.ENV_RUN_MODE, "full")
    for mode in ("smoke", "cpu", "full"):
        assert config.resolve_mode(mode) == mode


def test_env_var_overrides_auto(monkeypatch):
    monkeypatch.setenv(config.ENV_RUN_MODE, "smoke")
    assert config.resolve_mode("auto") == "smoke"


def test_auto_without_env_picks_by_hardware(monkeypatch):
    monkeypatch.delenv(config.ENV_RUN_MODE, raising=False)
    assert config.resolve_mode() == ("full" if torch.cuda.is_available() else "cpu")


def test_unknown_mode_lists_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="auto, smoke, cpu, full"):
        config.resolve_mode("fast")
    monkeypatch.setenv(config.ENV_RUN_MODE, "turbo")
    with pytest.raises(ValueError, match="COURSE_RUN_MODE"):
        config.resolve_mode("auto")


def test_seed_everything_reproduces_draws():
    config.seed_everything(3)
    a = torch.randn(5)
    config.seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_cpu_knobs_never_compile_and_gate_bf16():
    knobs = config.system_knobs("cpu")
    assert knobs.compile is False
    assert knobs.amp_bf16 == config.cpu_has_native_bf16()


def test_banner_names_mode_device_and_switch():
    text = config.banner("smoke", "cpu", "/data", "10 s")
    assert "smoke" in text and "cpu" in text and "/data" in text and "COURSE_RUN_MODE" in text


def test_environment_info_has_versions():
    info = config.environment_info("cpu")
    assert info["torch"] == torch.__version__ and info["device"] == "cpu"
