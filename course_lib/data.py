"""CIFAR-10/100 loading, the data registry, and a device-resident CIFAR batch loader.

Data are looked up in this order: the `root` argument, `$COURSE_DATA_DIR`, the repository's `data/` folder, then a
download (torchvision for CIFAR, the registry url for checkpoints). Three CIFAR forms are read: the torchvision folders
(`cifar-10-batches-py/`, `cifar-100-python/`), compact npz files (`cifar10.npz`, HWC uint8), and a *compact copy*
(`cifar10_jpeg.npz`: every image as JPEG bytes, 56 MB for all of CIFAR-10 instead of 171 MB, or fewer images; written
by `write_compact_cifar`, e.g. to carry the data to a GPU machine). Every registered file is checked against the
sha256 in `data/registry.json`, a compact copy against the digest it stores. Nothing ever falls back to synthetic data.

`CifarLoader` keeps a whole split on the device as uint8 and does normalisation, pad-4 random crop and horizontal
flip on whole batches with tensor ops (the airbench idea, made device-agnostic and seeded per epoch).
Taught in notebook 00_setup; used by every experiment.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, CourseError

__all__ = ["NORMALIZATION", "CIFAR10_CLASSES", "ENV_DATA_DIR", "REPO_DATA_DIR", "DataNotFoundError", "DataCorruptError",
           "search_dirs", "registry", "verify_sha256", "fetch_registered", "locate_cifar", "check_cifar", "load_cifar",
           "COMPACT_NAMES", "write_compact_cifar",
           "CifarLoader"]

# Mean and std of the akamaster ResNets' training pipeline; the course uses them for every network so that the
# pretrained weights and our own checkpoints see the same inputs.
NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
ENV_DATA_DIR = "COURSE_DATA_DIR"
REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
_CACHE_DIR = Path.home() / ".cache" / "course_lib"
_NPZ_NAMES = {  # (name, subset) -> npz file name
    ("cifar10", None): "cifar10.npz",
    ("cifar10", "lossless"): "cifar10_lossless_subset.npz",
    ("cifar100", None): "cifar100.npz",
    ("cifar100", "sample"): "cifar100_sample.npz",
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_TV_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
COMPACT_NAMES = {"cifar10": "cifar10_jpeg.npz", "cifar100": "cifar100_jpeg.npz"}  # written by `write_compact_cifar`
_verified: set[tuple[str, int, float]] = set()  # (path, size, mtime) already hashed in this session


class DataNotFoundError(CourseError, FileNotFoundError):
    """A dataset or checkpoint was found nowhere; the message says where we looked and what to do."""


class DataCorruptError(CourseError, RuntimeError):
    """A data or checkpoint file exists but is damaged or not the expected one; the message names the file, the
    cause, and a fix that exists for that file (a download only where the registry has a url)."""


def _replace_advice(path: Path) -> str:
    """How to replace a damaged file that has no public download."""
    return (f"It has no public download: replace it with a good copy (on the course machines: "
            f"../shared/data/{path.name}, see its README), or delete it so that the next data folder is searched "
            f"(${ENV_DATA_DIR}, then the repository's data/).")


def search_dirs(root: str | Path | None = None) -> list[Path]:
    """Folders searched for data, in order: `root`, `$COURSE_DATA_DIR`, the repo's `data/`, `~/.cache/course_lib`."""
    dirs = [Path(root)] if root is not None else []
    if os.environ.get(ENV_DATA_DIR):
        dirs.append(Path(os.environ[ENV_DATA_DIR]))
    dirs += [REPO_DATA_DIR, _CACHE_DIR]
    return list(dict.fromkeys(d.expanduser() for d in dirs))


def _download_dir() -> Path:
    """The repo's `data/` when writable (a clone), else the user cache (a pip install)."""
    return REPO_DATA_DIR if os.access(REPO_DATA_DIR, os.W_OK) else _CACHE_DIR


def registry() -> dict[str, dict]:
    """The entries of `data/registry.json` (url, mirrors, sha256 or md5, size, license), keyed by relative path."""
    path = REPO_DATA_DIR / "registry.json"
    if not path.exists():  # installed without the repo (Colab): the registry ships inside the package
        path = Path(__file__).with_name("registry.json")
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def verify_sha256(path: Path, expected: str, url: str | None = None, downloaded: bool = False,
                  advice: str | None = None) -> None:
    """Raise a clear error when `path`'s sha256 is not `expected` (hashed once per session per file version).

    Args:
        path: the file to check.
        expected: its registered sha256.
        url: where the file can be downloaded again (None: no public download; the advice says so).
        downloaded: `path` is a download from `url` that was just made (nothing of it is kept).
        advice: the fix to give instead (for a file the user named, e.g. an ImageNet checkpoint).

    Raises:
        DataCorruptError: the digest differs; names the file, both digests and a fix that exists.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key in _verified:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        source = "the sha256 given" if advice else "data/registry.json"
        found = f"sha256 {digest.hexdigest()} but {source} expects {expected}"
        if downloaded:
            raise DataCorruptError(f"the file downloaded from {url} is not the expected one ({found}); nothing of it "
                                   "was kept. Run again (a broken transfer), or download it by hand and check it.")
        if advice is None:
            advice = f"Delete it and run again: it is downloaded again from {url}." if url else _replace_advice(path)
        raise DataCorruptError(f"{path} is corrupt or not the expected file: {found}. {advice}")
    _verified.add(key)


def _download(url: str, dest: Path, sha256: str | None) -> None:
    """Download atomically (temporary file, check, rename) with a tqdm bar."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
        if sha256:
            verify_sha256(Path(tmp), sha256, url, downloaded=True)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch_registered(relpath: str, root: str | Path | None = None, download: bool = True) -> Path:
    """Find a registered file in the data folders (by relative path or bare name), check it, download if absent.

    Raises:
        DataNotFoundError: when the file is nowhere and cannot be downloaded; names every place looked at.
        DataCorruptError (a RuntimeError): when a found or downloaded file fails its sha256 check.
    """
    entry = registry()[relpath]
    name = Path(relpath).name
    candidates = [d / rel for d in search_dirs(root) for rel in dict.fromkeys((relpath, name))]
    for path in candidates:
        if path.is_file():
            if entry.get("sha256"):
                verify_sha256(path, entry["sha256"], entry.get("url"))
            return path
    errors = []
    urls = [u for u in [entry.get("url"), *entry.get("mirrors", [])] if u] if download else []
    for url in urls:
        dest = _download_dir() / relpath
        try:
            _download(url, dest, entry.get("sha256"))
            return dest
        except OSError as exc:
            errors.append(f"{url}: {exc}")
    looked = "\n  ".join(str(p) for p in candidates)
    tried = ("\nDownload failed:\n  " + "\n  ".join(errors)) if errors else (
        "\nNo public download exists for it." if not entry.get("url") else "")
    raise DataNotFoundError(
        f"{relpath} was not found. Looked at:\n  {looked}{tried}\n"
        f"Fix: put the file in one of those folders, or set {ENV_DATA_DIR} to the folder that holds it "
        f"(on the course machines: export {ENV_DATA_DIR}=../shared/data)."
    )


# ---------------------------------------------------------------------------------------------------------------
# CIFAR readers
# ---------------------------------------------------------------------------------------------------------------

def _read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as d:
            key = f"x_{split}"
            if key not in d:
                raise DataNotFoundError(f"{path} has no {split} split (keys: {sorted(d.files)})")
            return d[key], d[f"y_{split}"]
    except CourseError:
        raise
    except Exception as exc:  # not a zip, a truncated member, pickled content: the file is damaged
        raise DataCorruptError(f"{path} does not read as an npz file ({type(exc).__name__}: {exc}). "
                               + _replace_advice(path)) from exc


def _read_torchvision_folder(folder: Path, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    else:
        files, label_key = [split], b"fine_labels"
    images, labels = [], []
    for file in files:
        path = folder / file
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        except Exception as exc:  # missing, truncated or not a CIFAR pickle (UnpicklingError, EOFError, KeyError, ...)
            cause = "it is missing" if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}: {exc}"
            raise DataCorruptError(
                f"{path} is not a readable CIFAR batch file ({cause}), so the torchvision folder {folder} is "
                f"damaged. Fix: delete {folder} (torchvision then downloads it again, 170 MB, internet needed), "
                f"re-create it from the npz with make_torchvision_layout.py (../shared/data), or set {ENV_DATA_DIR} "
                f"to a folder holding {_NPZ_NAMES[(name, None)]}.") from exc
    return np.concatenate(images).transpose(0, 2, 3, 1), np.concatenate(labels)  # HWC like the npz files


def _torchvision_download(name: str, dest: Path) -> None:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    cls(str(dest), train=True, download=True)


def locate_cifar(name: str, root: str | Path | None = None) -> Path | None:
    """Where `load_cifar(name, ...)` would read the dataset from (a compact copy too), without reading it; None if
    not local."""
    for directory in search_dirs(root):
        for candidate in (directory / _NPZ_NAMES[(name, None)], directory / _TV_FOLDERS[name],
                          directory / COMPACT_NAMES[name]):
            if candidate.exists():
                return candidate
    return None


def check_cifar(name: str, root: str | Path | None = None) -> Path | None:
    """Where `load_cifar(name, ...)` would read the full dataset from, after checking that it reads: the npz's sha256
    (when registered) and members, or every batch of a torchvision folder. None when nothing is local.

    Raises:
        DataCorruptError: the file or folder found first is damaged; the message names it and a fix.
    """
    found = locate_cifar(name, root)
    if found is None:
        return None
    if found.is_dir():
        for split in ("train", "test"):
            _read_torchvision_folder(found, name, split)
    else:
        entry = registry().get(found.name)
        if entry and entry.get("sha256"):
            verify_sha256(found, entry["sha256"], entry.get("url"))
        for split in ("train", "test"):
            _read_npz(found, split)
    return found


def load_cifar(name: str, split: str, root: str | Path | None = None, subset: str | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load CIFAR-10 or CIFAR-100 as tensors.

    In each folder of `search_dirs(root)` the npz file is tried first, then the torchvision folder, then a compact
    copy (`COMPACT_NAMES`), which may hold fewer images than the whole dataset (its first n of each split).

    Args:
        name: "cifar10" or "cifar100".
        split: "train" or "test".
        root: a folder to search first (see `search_dirs` for the rest of the order).
        subset: None for the whole dataset; "lossless" for the 4,000/1,000 exact-pixel CIFAR-10 subset;
            "sample" for the 100-image CIFAR-100 smoke-test sample (train split only).
        download: try a torchvision download when nothing is found locally.

    Returns:
        `(images, labels)`: uint8 tensor (N, 3, 32, 32) and int64 tensor (N,).

    Raises:
        ConfigError (a ValueError): unknown name, split or subset.
        DataNotFoundError: nothing found and the download failed; the message names every place looked at.
        DataCorruptError (a RuntimeError): a registered file whose sha256 does not match `data/registry.json`, or a
            file or torchvision folder that does not read.
    """
    if name not in _TV_FOLDERS:
        raise ConfigError(f"unknown dataset {name!r}; choose cifar10 or cifar100")
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose train or test")
    if (name, subset) not in _NPZ_NAMES:
        valid = [s for n, s in _NPZ_NAMES if n == name and s]
        raise ConfigError(f"unknown subset {subset!r} for {name}; choose None or one of {valid}")
    npz_name, folder_name = _NPZ_NAMES[(name, subset)], _TV_FOLDERS[name]
    looked = []
    for directory in search_dirs(root):
        npz = directory / npz_name
        looked.append(str(npz))
        if npz.is_file():
            if npz_name in registry():
                verify_sha256(npz, registry()[npz_name]["sha256"], registry()[npz_name].get("url"))
            x, y = _read_npz(npz, split)
            return _to_tensors(x, y)
        if subset is None:
            folder = directory / folder_name
            looked.append(str(folder) + "/")
            if folder.is_dir():
                return _to_tensors(*_read_torchvision_folder(folder, name, split))
            compact = directory / COMPACT_NAMES[name]
            looked.append(str(compact))
            if compact.is_file():
                return _to_tensors(*_read_compact(compact, split))
    error = "no download was attempted (download=False, or a subset has no public download)"
    if download and subset is None:
        dest = _download_dir()
        try:
            _torchvision_download(name, dest)
            return _to_tensors(*_read_torchvision_folder(dest / folder_name, name, split))
        except Exception as exc:  # torchvision raises URLError, RuntimeError or OSError offline
            error = f"the torchvision download into {dest} failed: {exc}"
    places = "\n  ".join(looked)
    raise DataNotFoundError(
        f"{name} ({split}{', ' + subset if subset else ''}) was not found. Looked at:\n  {places}\n"
        f"and {error}.\nFix: set {ENV_DATA_DIR} to a folder holding {npz_name} or {folder_name}/ "
        f"(on the course machines: export {ENV_DATA_DIR}=../shared/data), or connect to the internet so "
        f"torchvision can download it."
    )


def _to_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # HWC -> (N, 3, 32, 32)
    return images.to(torch.uint8), torch.from_numpy(np.asarray(y)).to(torch.int64)


# ---------------------------------------------------------------------------------------------------------------
# The compact copy: JPEG bytes of every image in one npz (no pickle)
# ---------------------------------------------------------------------------------------------------------------

def _bytes_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def write_compact_cifar(dest: str | Path, name: str = "cifar10", n_train: int | None = None,
                        n_test: int | None = None, quality: int = 75, root: str | Path | None = None) -> Path:
    """Write a compact copy of CIFAR, `dest/COMPACT_NAMES[name]`: the first `n_train`/`n_test` images of each split
    (None: all), each stored as JPEG bytes (PIL, `quality`, 4:2:0), with the labels and a sha256 of the bytes.

    The offline CIFAR-10 files were decoded from quality-75 JPEGs, so quality 75 reproduces their pixels almost
    exactly (measured over the 50,000 training images: a mean absolute error of 0.16 of 255, a few pixels off by up
    to 66) at about 0.9 KB an image: 56 MB for all of CIFAR-10. Written atomically (temporary file, then rename).

    Returns:
        The file written.

    Raises:
        ValueError: a quality outside 1..95 or more images asked for than the source holds.
        DataNotFoundError: no CIFAR found to copy from (see `load_cifar`).
    """
    import io

    from PIL import Image

    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be in 1..95, got {quality}")
    arrays, about = {}, {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = load_cifar(name, split, root=root, download=False)
        if n is not None and n > len(labels):
            raise ValueError(f"{name} {split} has {len(labels)} images, {n} asked for")
        images, labels = images[:n], labels[:n]
        chunks = []
        for image in images.permute(0, 2, 3, 1).numpy():  # HWC uint8
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=quality)
            chunks.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        arrays[f"x_{split}_jpeg"] = np.concatenate(chunks)
        arrays[f"x_{split}_offsets"] = np.cumsum([0] + [len(c) for c in chunks], dtype=np.int64)
        arrays[f"x_{split}_sha256"] = np.array(_bytes_sha256(arrays[f"x_{split}_jpeg"]))
        arrays[f"y_{split}"] = labels.numpy()
        about[split] = len(labels)
    source = locate_cifar(name, root)
    arrays["about"] = np.array(f"{name}: the first {about['train']} train and {about['test']} test images of "
                               f"{source}, as JPEG (quality {quality}, PIL) bytes, by course_lib.data.write_compact_cifar")
    dest = Path(dest) / COMPACT_NAMES[name]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _read_compact(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one split of a compact copy (HWC uint8, like the npz files), after checking its bytes' sha256."""
    import io

    from PIL import Image

    with np.load(path, allow_pickle=False) as d:
        if f"x_{split}_jpeg" not in d:
            raise DataNotFoundError(f"{path} is not a compact CIFAR copy with a {split} split (keys: "
                                    f"{sorted(d.files)}); write one with data.write_compact_cifar")
        blob, offsets, labels = d[f"x_{split}_jpeg"], d[f"x_{split}_offsets"], d[f"y_{split}"]
        if _bytes_sha256(blob) != str(d[f"x_{split}_sha256"]):
            raise RuntimeError(f"{path} is corrupt: the sha256 of its {split} JPEG bytes is not the one it stores. "
                               "Write it again with data.write_compact_cifar.")
    images = np.zeros((len(labels), 32, 32, 3), dtype=np.uint8)
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        images[i] = np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"))
    return images, labels


# ---------------------------------------------------------------------------------------------------------------
# Device-resident loader
# ---------------------------------------------------------------------------------------------------------------

class CifarLoader:
    """Batches of a CIFAR split held on `device`, augmented with whole-batch tensor ops.

    Training (`train=True`): a fresh permutation each epoch, pad-4 zero-padded random crop and horizontal flip,
    `drop_last`. Evaluation: every image exactly once, in order, no augmentation. Randomness comes from a generator
    seeded with `(seed, epoch)`, so an epoch is reproducible and a resumed run sees the same batches. With
    `world_size > 1` each rank takes every `world_size`-th index of the same permutation (DDP).

    Args:
        images: uint8 tensor (N, 3, 32, 32).
        labels: int64 tensor (N,).
        batch_size: images per batch (per rank).
        train: training (shuffle + augment + drop_last) or evaluation behaviour.
        device: where the data and batches live.
        seed: base seed of the per-epoch generator.
        channels_last: return batches in NHWC memory format.
        normalization: (mean, std) per channel, on the [0, 1] scale.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, train: bool,
                 device: torch.device | str = "cpu", seed: int = 0, channels_last: bool = False,
                 normalization: tuple = NORMALIZATION, rank: int = 0, world_size: int = 1):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.channels_last, self.rank, self.world_size = channels_last, rank, world_size
        self.mean = torch.tensor(normalization[0], device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(normalization[1], device=self.device).view(1, 3, 1, 1) * 255
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentations the next iteration uses."""
        self.epoch = epoch

    def _epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """This rank's image indices plus crop shifts (2, n) and flips (n,) for the epoch.

        The permutation and the augmentation of every *global* position are drawn once from the epoch's generator
        and then split between ranks, so k ranks with batch B/k see exactly the images and augmentations that one
        process with batch B sees.
        """
        n = len(self.labels)
        if not self.train:
            return torch.arange(n)[self.rank::self.world_size], None, None
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(n, generator=gen)
        shifts = torch.randint(0, 9, (2, n), generator=gen)  # crop offsets in the 8-px padded image
        flips = torch.rand(n, generator=gen) < 0.5
        step = self.batch_size * self.world_size
        positions = torch.arange(n // step * step)  # drop_last on the global batch
        mine = positions.view(-1, self.world_size, self.batch_size)[:, self.rank].reshape(-1)
        return perm[mine], shifts[:, mine], flips[mine]

    def __len__(self) -> int:
        n = len(self._epoch_plan()[0])
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _augment(self, x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Pad-4 random crop and horizontal flip of a uint8 batch (B, 3, H, W), with offsets (2, B), flips (B,)."""
        b, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (4, 4, 4, 4))  # zeros, like torchvision's RandomCrop(32, padding=4)
        rows = shifts[0, :, None] + torch.arange(h, device=self.device)  # (B, H) rows of the padded image
        cols = shifts[1, :, None] + torch.arange(w, device=self.device)  # (B, W)
        flat = (rows[:, :, None] * (w + 8) + cols[:, None, :]).reshape(b, 1, h * w).expand(b, 3, h * w)
        cropped = padded.reshape(b, 3, -1).gather(2, flat).reshape(b, 3, h, w)  # one gather for the whole batch
        return torch.where(flips[:, None, None, None], cropped.flip(3), cropped)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx, shifts, flips = self._epoch_plan()
        idx = idx.to(self.device)
        if self.train:
            shifts, flips = shifts.to(self.device), flips.to(self.device)
        for start in range(0, len(idx), self.batch_size):
            part = slice(start, start + self.batch_size)
            x = self.images[idx[part]]
            if self.train:
                x = self._augment(x, shifts[:, part], flips[part])
            x = (x.float() - self.mean) / self.std
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx[part]]
