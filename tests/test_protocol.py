"""The protocol core: the package's import graph, one config story, stored-result reuse, one command line, and the
stored references summarizing to the numbers they were written with."""

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from course_lib import cli, experiments, imagenet, profiles, protocol, results
from course_lib.errors import ConfigError, StoredResultError

PACKAGE = Path(__file__).resolve().parents[1] / "course_lib"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports, at any level (inside functions too)."""
    modules = {_module_name(p): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                origin = ".".join(base[:len(base) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (origin, node.module or "") if p) if node.level else node.module
                for alias in node.names:  # `from . import x` imports a module; `from .x import y` imports x
                    candidate = f"{target}.{alias.name}"
                    edges.add(candidate if candidate in modules else target)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert "course_lib.protocol" in graph["course_lib.experiments"]
    assert "course_lib.protocol" in graph["course_lib.imagenet"]
    assert "course_lib.experiments" not in graph["course_lib.imagenet"]
    assert "course_lib.imagenet" not in graph["course_lib.experiments"]
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("cls, table", [(experiments.ExperimentConfig, "cifar-repvgg"),
                                        (experiments.ExperimentConfig, "cifar-resnet56"),
                                        (imagenet.ImageNetConfig, "imagenet")])
@pytest.mark.parametrize("mode", profiles.MODES)
def test_each_profile_sets_exactly_the_fields_of_its_config(cls, table, mode):
    fields = {f.name for f in dataclasses.fields(cls)} - {"mode"}
    assert set(profiles.sizes(table, mode)) == fields


def test_profile_lookup_errors():
    with pytest.raises(ValueError, match="unknown profile table"):
        profiles.sizes("04_cifar", "cpu")
    with pytest.raises(ValueError, match="resolve 'auto'"):
        profiles.sizes("cifar-repvgg", "auto")
    assert profiles.sizes("02_prelu_linearization", "smoke")["n_train"] == 2048


def test_result_defining_fields_are_marked_once():
    pre = experiments.ExperimentConfig.defining(protocol.PRETRAIN)
    post = experiments.ExperimentConfig.defining(protocol.POSTTRAIN)
    assert set(pre) < set(post)
    assert {"data_dir", "network", "pretrain_epochs", "batch_size"} <= set(pre)
    assert {"posttrain_lr", "freeze_tol", "layer_scale"} <= set(post) - set(pre)
    for not_defining in ("omegas", "seeds", "out_dir", "compile", "device", "eval_batch_size", "mode"):
        assert not_defining not in post
    assert {"imagenet_dir", "checkpoint", "image_size"} <= set(imagenet.ImageNetConfig.defining(protocol.PRETRAIN))


def _extended_config(marker):
    @dataclasses.dataclass(frozen=True)
    class Extended(experiments.ExperimentConfig):
        label_smoothing: float = marker

    values = {**profiles.sizes("cifar-repvgg", "smoke"), "label_smoothing": 0.1}
    return Extended, values


def test_a_new_result_defining_field_refuses_a_stored_run(tmp_path):
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path))
    name = results.run_name("channel", 0, omega=0.1)
    results.write_json_atomic(tmp_path / "runs" / f"{name}.json", {"kind": "post_train",
                                                                   "config": dataclasses.asdict(cfg)})
    assert protocol.stored_run(cfg, "channel", 0, 0.1) is not None  # same settings: reused
    extended, values = _extended_config(protocol.defines(protocol.POSTTRAIN))
    new = extended(mode="smoke", **{**values, "out_dir": str(tmp_path)})
    with pytest.raises(StoredResultError, match="label_smoothing: stored '<not recorded>' vs now 0.1"):
        protocol.stored_run(new, "channel", 0, 0.1)
    assert json.loads((tmp_path / "runs" / f"{name}.json").read_text())["kind"] == "post_train"  # untouched
    setting_only, values = _extended_config(protocol.setting())
    assert protocol.stored_run(setting_only(mode="smoke", **{**values, "out_dir": str(tmp_path)}),
                               "channel", 0, 0.1) is not None


def test_a_field_without_a_mark_is_refused():
    unmarked, values = _extended_config(dataclasses.field(default=0.0))
    with pytest.raises(TypeError, match=r"\['label_smoothing'\] have no mark"):
        unmarked(mode="smoke", **values)


def test_all_problems_of_a_config_are_reported_together():
    with pytest.raises(ConfigError) as info:
        experiments.cifar_config("smoke", omegas=(-1.0,), seeds=(), dataset="mnist")
    assert len(info.value.problems) == 3


@pytest.mark.parametrize("network", ["resnet20", "vgg16"])
def test_a_network_without_a_profile_is_an_error(network):
    with pytest.raises(ConfigError, match="unknown network"):
        experiments.cifar_config("smoke", network=network)


def test_set_parser_and_one_run_parser():
    assert protocol.parse_overrides(["lr=1e-4", "name=adamw", "seeds=[1, 2]"]) == {
        "lr": 1e-4, "name": "adamw", "seeds": [1, 2]}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        protocol.parse_overrides(["lr"])
    assert protocol.parse_one_run("layer:0.5:2") == ("layer", 2, 0.5, None)
    assert protocol.parse_one_run("channel:target4:1") == ("channel", 1, None, 4.0)
    with pytest.raises(ConfigError, match="GRANULARITY:KNOB:SEED"):
        protocol.parse_one_run("layer:0.5")


def test_importing_the_protocols_runs_no_git():
    code = ("import course_lib.experiments, course_lib.imagenet, course_lib.claims\n"
            "from course_lib import results\nprint(results.git_commit.cache_info().misses)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_export_and_use_a_reference(tmp_path):
    cfg = experiments.cifar_config("smoke", out_dir=str(tmp_path / "sweep"), targets=(4.0,), seeds=(0, 1))
    starts = []
    for seed in cfg.seeds:
        starts.append({"kind": "pretrain", "seed": seed, "config": dataclasses.asdict(cfg), "test_accuracy": 0.5,
                       "test_accuracy_train_form": 0.5, "napl": 22.0, "parameters_deploy": 1, "wall_time_s": 1.0})
        results.write_json_atomic(protocol.start_dir(cfg, seed) / "result.json", starts[-1])
        for g in cfg.granularities:
            run = {"kind": "post_train", "granularity": g, "seed": seed, "omega": None, "target": 4.0,
                   "napl": 4.0, "reached": True, "test_accuracy": 0.4, "test_accuracy_linearized": 0.4,
                   "config": dataclasses.asdict(cfg)}
            results.write_json_atomic(Path(cfg.out_dir) / "runs" / f"{results.run_name_of(run)}.json", run)
    dest = protocol.export_reference(cfg.out_dir, "mine", tmp_path / "reference")
    assert (dest / "pretrain" / "seed1" / "result.json").exists() and len(list((dest / "runs").glob("*.json"))) == 4
    fresh = dataclasses.replace(cfg, out_dir=str(tmp_path / "fresh"))
    assert protocol.use_reference(fresh, "mine", tmp_path / "reference")
    assert len(protocol.load_results(fresh.out_dir)[1]) == 4
    other = dataclasses.replace(cfg, out_dir=str(tmp_path / "other"), posttrain_lr=0.5)
    assert not protocol.use_reference(other, "mine", tmp_path / "reference")  # other settings: not used
    more = dataclasses.replace(cfg, out_dir=str(tmp_path / "more"), targets=(4.0, 8.0))
    assert not protocol.reference_matches(more, "mine", tmp_path / "reference")  # does not cover the sweep


def test_command_line_lists_commands_and_each_has_help(capsys):
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in listing
        with pytest.raises(SystemExit) as info:
            cli.main([command, "--help"])
        assert info.value.code == 0
        assert f"python -m course_lib {command}" in capsys.readouterr().out


def test_command_line_errors_are_one_line(capsys):
    assert cli.main(["train"]) == 2
    assert "unknown command 'train'" in capsys.readouterr().err
    assert cli.main(["cifar", "--mode", "smoke", "--set", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown setting(s) ['bogus']") and "Traceback" not in err
    with pytest.raises(ConfigError):
        cli.main(["--debug", "cifar", "--mode", "smoke", "--set", "bogus=1"])


def test_python_dash_m_course_lib_runs_envcheck():
    out = subprocess.run([sys.executable, "-m", "course_lib", "envcheck"], capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    assert "torch" in out.stdout and "data folders" in out.stdout
