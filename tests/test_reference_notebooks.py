"""Notebooks 04 and 05 in `cpu` mode show the stored reference sweeps (every run's result file) instead of computing
them, when their settings match: what a laptop learner gets from "Run all"."""

import json

import papermill
import pytest

from course_lib import experiments, protocol


@pytest.mark.slow
@pytest.mark.parametrize("notebook, reference, cfg", [
    ("04_cifar_channel_vs_layer", "cifar10_cpu", lambda out: experiments.cifar_config("cpu", out_dir=out)),
    ("05_resnet56_ablation", "resnet56_cpu", lambda out: experiments.cifar_config("cpu", network="resnet56",
                                                                                  out_dir=out)),
])
def test_cpu_mode_shows_the_stored_reference(notebook, reference, cfg, tmp_path, monkeypatch, data_dir):
    assert protocol.reference_matches(cfg(str(tmp_path)), reference), f"data/reference/{reference}/ is out of date"
    monkeypatch.setenv("COURSE_WIDGETS", "0")
    out = tmp_path / f"{notebook}.ipynb"
    papermill.execute_notebook(f"notebooks/{notebook}.ipynb", str(out), kernel_name="python3", cwd="notebooks",
                               parameters={"RUN_MODE": "cpu", "OUT_DIR": str(tmp_path / "sweep")},
                               progress_bar=False)
    text = json.dumps(json.loads(out.read_text())["cells"])
    assert "the stored reference matches these settings" in text
    assert "Reading after recovery" in text
    assert not list((tmp_path / "sweep").rglob("*.pt"))  # nothing of the sweep was trained
