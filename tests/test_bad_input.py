"""Every mistake answered before work starts, nothing overwritten (issue 15).

Each bad input goes through the real command line (`course_lib.cli.main`, in this process; a few through
`python -m course_lib` in a subprocess) and asserts three things: the exit status 2, the message (what, where, how to
fix), and that nothing on disk changed (names, sizes and mtimes of every file and folder under the test's folder).
The README's "Reliability" table lists these cases with their messages.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from course_lib import cli, data, envcheck, experiments, locks, outdir, reproduce, results, storage
from course_lib.errors import ConfigError, StorageError

# fixed-ω runs from one shared start and no recovery: the smallest sweep the protocol allows
SMALL = ["n_train=256", "n_test=200", "pretrain_epochs=1", "posttrain_epochs=1", "amp_bf16=false",
         "channels_last=false", "granularities=channel", "targets=[]", "independent_starts=false", "recovery_epochs=0"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread for the tiny trainings here (as the subprocesses: OMP_NUM_THREADS=1): on a busy 2-core CI
    machine a second spinning thread only slows them down."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _offline_data(monkeypatch):
    """The offline CIFAR files for the command lines run here (CI sets COURSE_DATA_DIR; a bare pytest may not)."""
    shared = REPO.parent / "shared" / "data"
    if not os.environ.get("COURSE_DATA_DIR") and (shared / "cifar10.npz").is_file():
        monkeypatch.setenv("COURSE_DATA_DIR", str(shared))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root`: name -> (size, mtime) for files, (mtime,) for folders."""
    found = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        found[str(path.relative_to(root))] = (stat.st_mtime_ns,) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return found


def cifar(out: Path, *extra: str, sets: tuple[str, ...] = ()) -> list[str]:
    """A smoke `cifar` command line into `out` with tiny sizes (one `--set`: argparse keeps only the last)."""
    return ["cifar", "--mode", "smoke", "--out", str(out), "--omegas", "0.1", *extra, "--set", *SMALL, *sets]


def refused(capsys, argv: list[str], root: Path, *fragments: str) -> str:
    """Run `argv` and check: exit status 2, `error: ` without a traceback, every fragment in stderr, and no change
    under `root`. Returns stderr."""
    before = snapshot(root)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors (a value argparse parses itself)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: " in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert snapshot(root) == before, "the refused command changed files"
    return err


@pytest.fixture(scope="module")
def stored_sweep(tmp_path_factory) -> Path:
    """A finished tiny sweep (ω 0.1 and 0.3, channel-wise, one seed) made in this process."""
    out = tmp_path_factory.mktemp("stored") / "sweep"
    assert cli.main(["cifar", "--mode", "smoke", "--out", str(out), "--omegas", "0.1", "0.3", "--set", *SMALL]) == 0
    return out


def _copy(stored: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(stored, out)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Settings: every source, every type, checked before any data is read
# ---------------------------------------------------------------------------------------------------------------------

SETTING_CASES = [  # (id, extra arguments, extra --set items, message fragments)
    ("duplicate seeds", ["--seeds", "0", "0"], [], ["seeds has duplicates [0]", "independent network"]),
    ("duplicate omegas", ["--omegas", "0.1", "0.1"], [], ["omegas has duplicates [0.1]"]),
    ("negative omega", ["--omegas", "-1"], [], ["omega must be a finite number >= 0"]),
    ("nan omega", ["--omegas", "nan"], [], ["omega must be a finite number >= 0"]),
    ("no seeds", ["--seeds"], [], ["at least one seed is needed"]),
    ("text batch size", [], ["batch_size=abc"], ["batch_size must be a whole number, got 'abc'"]),
    ("zero batch size", [], ["batch_size=0"], ["batch_size must be >= 1, got 0"]),
    ("fractional batch size", [], ["batch_size=1.5"], ["batch_size must be a whole number, got 1.5"]),
    ("misspelt granularity", [], ["granularities=chanel"], ["unknown granularity 'chanel'"]),
    ("no granularity", [], ["granularities=[]"], ["granularities is empty"]),
    ("bad boolean", [], ["amp_bf16=maybe"], ["amp_bf16 must be true or false (or null), got 'maybe'"]),
    ("zero width", [], ["width_mult=0"], ["width_mult must be a finite number > 0"]),
    ("negative learning rate", [], ["pretrain_lr=-0.1"], ["pretrain_lr must be a finite number > 0"]),
    ("unknown optimizer", [], ["posttrain_optimizer=adam"], ["posttrain_optimizer must be one of ['adamw', 'sgd']"]),
    ("unknown arch", [], ["arch=B0"], ["arch must be a RepVGG family member"]),
    ("unknown device", [], ["device=gpu"], ['device must be "auto" or a torch device']),
    ("fewer images than a batch", [], ["n_train=1"], ["n_train (1) is smaller than batch_size (128)"]),
    ("freeze tolerance above 1", [], ["freeze_tol=2"], ["freeze_tol must be between 0 and 1"]),
    ("text seeds", [], ["seeds=abc"], ["seeds must be a list of whole numbers, got 'abc'"]),
    ("unknown setting", [], ["bogus=1"], ["unknown setting(s) ['bogus']", "valid settings are"]),
    ("--set without =", [], ["lr"], ["--set expects KEY=VALUE"]),
    ("unknown mode", ["--mode", "bogus"], [], ["unknown run mode 'bogus'"]),
    ("unknown dataset", ["--dataset", "mnist"], [], ["unknown dataset 'mnist'"]),
    ("unknown network", ["--network", "vgg16"], [], ["unknown network 'vgg16'"]),
    ("--one-run misspelt", ["--one-run", "chanel:0.1:0"], [], ["--one-run 'chanel:0.1:0'", "granularity must be"]),
    ("--one-run not a number", ["--one-run", "channel:x:0"], [], ["--one-run expects GRANULARITY:KNOB:SEED"]),
    ("--one-run negative omega", ["--one-run", "channel:-1:0"], [], ["omega or target a finite number >= 0"]),
    ("three mistakes at once", ["--seeds", "0", "0", "--omegas", "-1"], ["batch_size=abc"],
     ["seeds has duplicates", "omega must be a finite number", "batch_size must be a whole number"]),
]


@pytest.mark.parametrize("extra, sets, fragments", [c[1:] for c in SETTING_CASES], ids=[c[0] for c in SETTING_CASES])
def test_a_bad_setting_is_refused_before_any_work(capsys, tmp_path, extra, sets, fragments):
    refused(capsys, cifar(tmp_path / "out", *extra, sets=tuple(sets)), tmp_path, *fragments)


def test_an_unknown_mode_in_the_environment_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUN_MODE", "fast")
    refused(capsys, ["cifar", "--out", str(tmp_path / "out")], tmp_path, "$COURSE_RUN_MODE='fast' is not a run mode")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_a_device_that_is_not_there_is_refused(capsys, tmp_path, data_dir):
    refused(capsys, cifar(tmp_path / "out", sets=("device=cuda",)), tmp_path, "device 'cuda' is not available here")


def test_papermill_strings_become_the_declared_types():
    # papermill -p passes text; a list in text is parsed, a single name fills a tuple (never its letters)
    cfg = experiments.cifar_config("smoke", omegas="[0.1, 0.01]", seeds="[0, 1]", granularities="channel",
                                   amp_bf16="false", n_train="256", out_dir=Path("runs/x"))
    assert cfg.omegas == (0.1, 0.01) and cfg.seeds == (0, 1) and cfg.granularities == ("channel",)
    assert cfg.amp_bf16 is False and cfg.n_train == 256 and cfg.out_dir == "runs/x"
    both = experiments.cifar_config("smoke", granularities="channel,layer", n_test="null")
    assert both.granularities == ("channel", "layer") and both.n_test is None


def test_papermill_strings_with_bad_values_are_one_clear_error():
    with pytest.raises(ConfigError) as error:
        experiments.cifar_config("smoke", omegas="[-1]", seeds="[]")
    assert error.value.problems == ["omega must be a finite number >= 0, got (-1.0,)", "at least one seed is needed"]


def test_papermill_on_a_notebook_reports_the_config_error(tmp_path):
    import papermill

    notebook = REPO / "notebooks" / "04_cifar_channel_vs_layer.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(str(notebook), str(tmp_path / "04.ipynb"), kernel_name="python3",
                                   parameters={"RUN_MODE": "smoke", "OMEGAS": "[-1]", "SEEDS": "[]",
                                               "OUT_DIR": str(tmp_path / "out")}, progress_bar=False)
    assert error.value.ename == "ConfigError" and "omega must be a finite number" in error.value.evalue
    assert "at least one seed" in error.value.evalue and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# The out dir
# ---------------------------------------------------------------------------------------------------------------------

def test_an_out_dir_that_is_a_file_is_refused(capsys, tmp_path, data_dir):
    (tmp_path / "results.txt").write_text("not a folder")
    refused(capsys, cifar(tmp_path / "results.txt"), tmp_path, "is a file, not a folder")


def test_an_out_dir_below_a_file_is_refused(capsys, tmp_path, data_dir):
    (tmp_path / "results.txt").write_text("not a folder")
    refused(capsys, cifar(tmp_path / "results.txt" / "sweep"), tmp_path, "cannot be created", "is a file")


def test_an_unwritable_out_dir_is_refused(capsys, tmp_path, monkeypatch, data_dir):
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root ignores permission bits: judge by them, as for any other user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and not (
            mode & os.W_OK and not os.stat(p).st_mode & 0o222))
    try:
        refused(capsys, cifar(locked / "sweep"), tmp_path, f"cannot create {locked / 'sweep'} in {locked}")
    finally:
        locked.chmod(0o755)


def test_too_little_free_space_is_refused(capsys, tmp_path, monkeypatch, data_dir):
    monkeypatch.setattr(outdir, "free_bytes", lambda path: 10**6)
    refused(capsys, cifar(tmp_path / "out"), tmp_path, "has 1.0 MB free, but this run needs about", "free some space")


def test_the_space_estimate_grows_with_the_network_and_kept_models():
    small = experiments.cifar_config("smoke")
    big = experiments.cifar_config("full")  # RepVGG-A2: ~25 M parameters, 9 ω x 2 x 3 runs
    assert outdir.bytes_needed(big, True, 54) > outdir.bytes_needed(small, True, 4) + 400 * 2**20
    assert outdir.bytes_needed(small, False, 0) == outdir.MARGIN_BYTES


def test_a_data_dir_that_does_not_exist_is_refused(capsys, tmp_path, data_dir):
    refused(capsys, cifar(tmp_path / "out", sets=(f"data_dir={tmp_path / 'nope'}",)), tmp_path,
            f"data_dir {tmp_path / 'nope'} is not a folder")


# ---------------------------------------------------------------------------------------------------------------------
# Data: missing, damaged, and what the environment check says
# ---------------------------------------------------------------------------------------------------------------------

def _garbage_torchvision_folder(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_text("this is not a pickle\n")
    return folder


def test_no_data_anywhere_is_one_clear_error(capsys, tmp_path, isolated_data, monkeypatch):
    def offline(name, dest):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(data, "_torchvision_download", offline)
    empty = tmp_path / "my-data"
    empty.mkdir()
    refused(capsys, cifar(tmp_path / "out", sets=(f"data_dir={empty}",)), tmp_path,
            "cifar10 (train) was not found", str(empty), "network unreachable", "Fix: set COURSE_DATA_DIR")


def test_a_corrupt_npz_without_a_download_gets_true_advice(capsys, tmp_path):
    folder = tmp_path / "my-data"
    folder.mkdir()
    (folder / "cifar10.npz").write_bytes(b"\0" * 1000)
    err = refused(capsys, cifar(tmp_path / "out", sets=(f"data_dir={folder}",)), tmp_path,
                  f"{folder / 'cifar10.npz'} is corrupt or not the expected file", "It has no public download")
    assert "downloaded again" not in err


def test_a_garbage_torchvision_folder_names_the_file_and_the_fix(capsys, tmp_path, isolated_data):
    folder = _garbage_torchvision_folder(tmp_path / "my-data")
    refused(capsys, cifar(tmp_path / "out", sets=(f"data_dir={folder.parent}",)), tmp_path,
            f"{folder / 'data_batch_1'} is not a readable CIFAR batch file", "UnpicklingError", f"delete {folder}")


def test_the_environment_check_reads_the_data_it_finds(tmp_path, isolated_data, monkeypatch):
    (isolated_data / "cifar10.npz").write_bytes(b"\0" * 1000)
    _garbage_torchvision_folder(isolated_data.parent / "other")
    rows = {c.item: c for c in envcheck._data_checks()}
    assert rows["cifar10"].status == "missing" and "sha256" in rows["cifar10"].detail
    monkeypatch.setenv("COURSE_DATA_DIR", str(isolated_data.parent / "other"))
    rows = {c.item: c for c in envcheck._data_checks()}
    assert rows["cifar10"].status == "missing" and "not a readable CIFAR batch file" in rows["cifar10"].detail


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    from course_lib import imagenet

    (tmp_path / "a2.pt").write_bytes(b"not a torch file")
    with pytest.raises(data.DataCorruptError, match="does not read as a PyTorch file"):
        imagenet.load_checkpoint(tmp_path / "a2.pt")


# ---------------------------------------------------------------------------------------------------------------------
# ImageNet: every problem of the inputs in one message
# ---------------------------------------------------------------------------------------------------------------------

def test_imagenet_wrong_folder_and_no_checkpoint_are_reported_together(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGENET_DIR", raising=False)
    refused(capsys, ["imagenet", "--mode", "full", "--imagenet-dir", str(tmp_path / "imagenet"), "--out",
                     str(tmp_path / "out")], tmp_path,
            "2 problems, nothing was started", f"{tmp_path / 'imagenet'} does not exist", "give a checkpoint")


def test_imagenet_a_file_as_the_folder_and_a_missing_checkpoint(capsys, tmp_path):
    (tmp_path / "imagenet.tar").write_text("an archive, not a folder")
    refused(capsys, ["imagenet", "--mode", "full", "--imagenet-dir", str(tmp_path / "imagenet.tar"), "--checkpoint",
                     str(tmp_path / "a2.pt"), "--out", str(tmp_path / "out")], tmp_path,
            "is a file, not a folder", f"checkpoint {tmp_path / 'a2.pt'} not found")


def test_imagenet_an_unknown_reader_is_refused(capsys, tmp_path):
    refused(capsys, ["imagenet", "--mode", "smoke", "--out", str(tmp_path / "out"), "--set", "reader=opencv"],
            tmp_path, "unknown reader 'opencv'")


# ---------------------------------------------------------------------------------------------------------------------
# Stored results are never replaced by results made with other settings
# ---------------------------------------------------------------------------------------------------------------------

def test_a_stored_pretraining_with_other_settings_is_refused(capsys, tmp_path, stored_sweep):
    out = _copy(stored_sweep, tmp_path)
    refused(capsys, cifar(out, sets=("pretrain_epochs=2",)), tmp_path,
            "holds a pretrain made with other settings (pretrain_epochs: stored 1 vs now 2)", "Nothing was overwritten")


def test_an_interrupted_pretraining_with_other_settings_is_not_resumed(capsys, tmp_path, data_dir):
    other = experiments.cifar_config("smoke", out_dir=str(tmp_path / "out"), pretrain_epochs=5, n_train=256,
                                     n_test=200, amp_bf16=False, channels_last=False, granularities=("channel",),
                                     omegas=(0.1,), targets=(), independent_starts=False, recovery_epochs=0)
    values = json.loads(json.dumps(asdict(other)))
    (tmp_path / "out" / "pretrain").mkdir(parents=True)
    (tmp_path / "out" / "pretrain" / "checkpoint.pt").write_bytes(b"epoch 3 of 5")
    (tmp_path / "out" / "pretrain" / "started.settings").write_text(
        json.dumps({f: values[f] for f in other.defining("pretrain")}))
    refused(capsys, cifar(tmp_path / "out"), tmp_path, "holds an interrupted pretrain made with other settings",
            "pretrain_epochs: started with 5 vs now 1", "checkpoint.pt")


def test_a_damaged_stored_run_is_reported_before_any_work(capsys, tmp_path, stored_sweep):
    out = _copy(stored_sweep, tmp_path)
    (out / "runs" / f"{results.run_name('channel', 0, omega=0.1)}.json").write_text('{"kind": "post_tr')
    refused(capsys, cifar(out), tmp_path, "does not read", "move it away")


def test_a_full_disk_names_the_file_keeps_everything_and_the_rerun_resumes(capsys, tmp_path, monkeypatch, data_dir):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file a write goes to")
    real = storage._write_fd

    def disk_full_for_run_checkpoints(fd, chunk):
        if ".ckpt.pt." in os.readlink(f"/proc/self/fd/{fd}"):  # the post-training run's epoch checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, chunk)

    out = tmp_path / "out"
    monkeypatch.setattr(storage, "_write_fd", disk_full_for_run_checkpoints)
    assert cli.main(cifar(out)) == 2
    err = capsys.readouterr().err
    name = results.run_name("channel", 0, omega=0.1)
    for fragment in (f"could not write {out / 'runs' / name}.ckpt.pt", "the disk is full", "free there",
                     "Nothing was lost", "run the same command again"):
        assert fragment in err, err
    assert "Traceback" not in err and (out / "pretrain" / "result.json").exists()
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("*.lock"))
    stamp = (out / "pretrain" / "result.json").stat().st_mtime_ns
    monkeypatch.setattr(storage, "_write_fd", real)
    assert cli.main(cifar(out)) == 0
    assert (out / "pretrain" / "result.json").stat().st_mtime_ns == stamp  # read back, not pre-trained again
    assert (out / "runs" / f"{name}.json").exists() and not list(out.rglob("*.settings"))


def test_a_failed_json_write_keeps_the_previous_version(tmp_path, monkeypatch):
    path = results.write_json_atomic(tmp_path / "summary.json", {"runs": 3})
    monkeypatch.setattr(storage, "_write_fd", lambda fd, chunk: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(StorageError, match="the disk is full") as error:
        results.write_json_atomic(path, {"runs": 4})
    assert str(path) in str(error.value) and "its previous version is intact" in str(error.value)
    assert json.loads(path.read_text()) == {"runs": 3} and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# ---------------------------------------------------------------------------------------------------------------------
# Locks
# ---------------------------------------------------------------------------------------------------------------------

def _lock(path: Path, pid: int, host: str | None = None, kind: str = "a sweep") -> None:
    import psutil

    started = psutil.Process(pid).create_time() if psutil.pid_exists(pid) else None
    holder = locks.Holder(pid, host or socket.gethostname(), kind, time.time(), "python -m course_lib cifar", started)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(holder)))


def test_a_folder_held_by_a_live_sweep_is_refused_naming_it(capsys, tmp_path, data_dir):
    _lock(tmp_path / "out" / ".lock", os.getppid())
    refused(capsys, cifar(tmp_path / "out"), tmp_path, "is in use", f"pid {os.getppid()} on host",
            str(tmp_path / "out" / ".lock"), "Nothing was changed")


def test_a_lock_of_another_host_says_which_file_to_delete(capsys, tmp_path, data_dir):
    _lock(tmp_path / "out" / ".lock", 12345, host="node-7")
    refused(capsys, cifar(tmp_path / "out"), tmp_path, "on host node-7", "cannot be checked from here",
            f"delete {tmp_path / 'out' / '.lock'}")


def test_a_one_run_into_a_folder_held_by_a_sweep_is_refused(capsys, tmp_path, data_dir):
    _lock(tmp_path / "out" / ".lock", os.getppid())
    refused(capsys, cifar(tmp_path / "out", "--one-run", "layer:0.1:0"), tmp_path, "runs every run of its grid")


def test_a_sweep_into_a_folder_where_one_runs_work_is_refused(capsys, tmp_path, data_dir):
    _lock(tmp_path / "out" / "runs" / "layer-omega0.1-seed0.lock", os.getppid(), kind="post-training run")
    refused(capsys, cifar(tmp_path / "out"), tmp_path, "in use by --one-run processes", "layer-omega0.1-seed0.lock")


def test_a_stale_lock_is_taken_over_and_says_so(capsys, tmp_path, stored_sweep):
    out = _copy(stored_sweep, tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _lock(out / ".lock", gone.pid)
    assert cli.main(cifar(out)) == 0
    assert "took over the stale lock" in capsys.readouterr().err and not (out / ".lock").exists()


def test_a_lock_is_reentrant_and_removed_at_the_end(tmp_path):
    path = tmp_path / ".lock"
    with locks.hold(path, "a test"):
        with locks.hold(path, "a test"):
            assert locks.read_holder(path).pid == os.getpid()
        assert path.exists()
    assert not path.exists()


def test_an_old_unreadable_lock_is_stale(tmp_path, capsys):
    path = tmp_path / ".lock"
    path.write_text("")  # its writer died between creating and filling it
    os.utime(path, (time.time() - 60, time.time() - 60))
    with locks.hold(path, "a test"):
        assert locks.read_holder(path).pid == os.getpid()
    assert "took over the stale lock" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Summaries never shrink
# ---------------------------------------------------------------------------------------------------------------------

def test_a_sweep_on_fewer_omegas_keeps_every_run_in_its_summary(tmp_path, stored_sweep):
    out = _copy(stored_sweep, tmp_path)
    assert cli.main(cifar(out)) == 0  # only ω = 0.1 now
    summary = json.loads((out / "summary.json").read_text())
    assert [p["omega"] for p in summary["curves"]["channel"]] == [0.1, 0.3] and summary["n_runs"] == 2


def test_reproduce_only_a_prefix_that_matches_nothing_is_refused(capsys, tmp_path):
    refused(capsys, ["reproduce", "--mode", "smoke", "--out", str(tmp_path / "runs"), "--only", "4"], tmp_path,
            "--only 4 matches no notebook", "00_setup.ipynb")


def test_reproduce_refuses_a_summary_of_another_mode(capsys, tmp_path):
    results.write_json_atomic(tmp_path / "runs" / "smoke" / "summary.json", {"mode": "cpu", "notebooks": []})
    refused(capsys, ["reproduce", "--mode", "smoke", "--out", str(tmp_path / "runs"), "--only", "01"], tmp_path,
            "is the summary of mode 'cpu'", "nothing was overwritten")


def test_reproduce_into_a_folder_in_use_is_refused(capsys, tmp_path):
    _lock(tmp_path / "runs" / "smoke" / ".lock", os.getppid(), kind="make reproduce")
    refused(capsys, ["reproduce", "--mode", "smoke", "--out", str(tmp_path / "runs"), "--only", "01"], tmp_path,
            "is in use", "make reproduce", "choose another --out")


def test_reproduce_merges_its_summary(tmp_path, monkeypatch):
    import papermill

    def execute(source, output, **kwargs):  # the notebooks themselves are tested elsewhere
        Path(output).write_text(Path(source).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    out = tmp_path / "runs"
    assert reproduce.main(["--mode", "smoke", "--out", str(out), "--only", "01"]) == 0
    assert reproduce.main(["--mode", "smoke", "--out", str(out), "--only", "03"]) == 0
    summary = json.loads((out / "smoke" / "summary.json").read_text())
    assert [e["notebook"] for e in summary["notebooks"]] == ["01_function_spaces.ipynb", "03_paths_and_napl.ipynb"]


# ---------------------------------------------------------------------------------------------------------------------
# Paths that do not depend on the working directory
# ---------------------------------------------------------------------------------------------------------------------

def test_notebook_defaults_resolve_against_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # papermill started elsewhere, without --cwd
    assert results.repo_path("runs/04_cifar_smoke") == REPO / "runs" / "04_cifar_smoke"
    monkeypatch.setattr(results, "REPO_ROOT", tmp_path / "site-packages")  # installed without the repository
    assert results.repo_path("runs") == tmp_path / "runs"


@pytest.mark.parametrize("name", ["04_cifar_channel_vs_layer", "05_resnet56_ablation", "06_imagenet_repvgg_a2",
                                  "07_results"])
def test_notebooks_build_their_folders_with_repo_path(name):
    cells = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "results.repo_path(" in code
    assert 'OUT_DIR or f"../runs' not in code and 'RUNS_DIR = "../runs"' not in code
    for profile in (REPO / "notebooks" / "params").glob(f"{name}.*.yaml"):
        assert "../runs" not in profile.read_text()


# ---------------------------------------------------------------------------------------------------------------------
# Real processes: exit status and stderr, two sweeps at once, several --one-run at once
# ---------------------------------------------------------------------------------------------------------------------

def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "course_lib", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)


def test_python_dash_m_course_lib_exits_2_with_one_line(tmp_path):
    plain = _start(cifar(tmp_path / "out", "--seeds", "0", "0"))
    debug = _start(["--debug", *cifar(tmp_path / "out", "--seeds", "0", "0")])
    out, err = plain.communicate(timeout=300)
    assert plain.returncode == 2 and err.startswith("error: seeds has duplicates [0]") and "Traceback" not in err
    _, debug_err = debug.communicate(timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug_err and "ConfigError: seeds has duplicates" in debug_err
    assert not (tmp_path / "out").exists()


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    """(exit status, stderr) of each process, once it has ended."""
    found = []
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        found.append((proc.returncode, err))
    return found


def _consistent(out: Path, runs: int) -> None:
    """One pre-training, `runs` run results made from it with the same settings, no lock or leftover."""
    start = json.loads((out / "pretrain" / "result.json").read_text())
    found = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert len(found) == runs
    fields = experiments.ExperimentConfig.defining("pretrain")
    assert all({f: r["config"][f] for f in fields} == {f: start["config"][f] for f in fields} for r in found)
    leftovers = [p.name for p in out.rglob("*") if p.suffix in (".lock", ".settings", ".tmp") or "ckpt" in p.name]
    assert not leftovers, leftovers


def test_two_sweeps_at_once_one_runs_one_is_refused(tmp_path, data_dir):
    out = tmp_path / "out"
    procs = [_start(cifar(out)) for _ in range(2)]
    finished = _finish(procs)
    codes = sorted(code for code, _ in finished)
    assert codes == [0, 2], finished
    refusal = next(err for code, err in finished if code == 2)
    assert refusal.startswith("error: ") and "is in use" in refusal and "Traceback" not in refusal
    _consistent(out, runs=1)
    assert json.loads((out / "summary.json").read_text())["n_runs"] == 1


def test_several_one_runs_at_once_share_one_pretraining(tmp_path, data_dir):
    # the pattern of course_lib.bench's docstring: several runs per GPU, all started together
    out = tmp_path / "out"
    procs = [_start(cifar(out, "--one-run", run)) for run in ("channel:0.1:0", "layer:0.1:0")]
    finished = _finish(procs)
    assert [code for code, _ in finished] == [0, 0], finished
    _consistent(out, runs=2)
    assert sum("waiting: " in err for _, err in finished) <= 1
