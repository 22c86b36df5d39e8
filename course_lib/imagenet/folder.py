"""ImageNet data: the folder check, transforms, JPEG readers, a DDP-aware loader, and a generated smoke folder.

`check_imagefolder` turns a missing or malformed `IMAGENET_DIR` into one `ImageNetNotFoundError` that names the
folder, the expected layout and how to prepare it; ImageNet is never downloaded. `ImageNetLoader` wraps a DataLoader
with the interface `train.fit` and `train.evaluate` use (batches on the device, `set_epoch`, `len`) and an exact
evaluation split under DDP. `make_smoke_imagefolder` writes a small ImageFolder of real CIFAR-10 photos, so the whole
path runs in CI. Part of `course_lib.imagenet`; taught in notebook 06_imagenet_repvgg_a2.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from .. import data
from ..results import read_json, write_json_atomic
from ..train import init_distributed  # (`train` is also a flag name below)

__all__ = ["ENV_IMAGENET_DIR", "ImageNetNotFoundError", "check_imagefolder", "train_transform", "val_transform",
           "READERS", "measure_decode_speed", "image_folder", "ImageNetLoader", "make_smoke_imagefolder"]

ENV_IMAGENET_DIR = "IMAGENET_DIR"
_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_LAYOUT = ("<IMAGENET_DIR>/train/<wnid>/*.JPEG and <IMAGENET_DIR>/val/<wnid>/*.JPEG (torchvision ImageFolder layout, "
           "the same class folders in both)")
_VALPREP = ("The official validation tarball unpacks to 50,000 files in one folder; sort them into class folders "
            "with pytorch/examples' imagenet/extract_ILSVRC.sh (it runs the widely used valprep.sh), or let "
            "torchvision.datasets.ImageNet(root, split='val') do the same from the devkit.")


class ImageNetNotFoundError(data.DataNotFoundError):
    """IMAGENET_DIR is unset, missing or not in ImageFolder layout; the message says what was expected and how."""


def _images_in(folder: Path) -> bool:
    return any(e.is_file() and e.name.lower().endswith(_IMAGE_SUFFIXES) for e in os.scandir(folder))


def check_imagefolder(root: str | Path | None) -> dict:
    """Check that `root` (default `$IMAGENET_DIR`) holds an ImageFolder-layout ImageNet (or a subset of it).

    Returns:
        {"root": Path, "classes": sorted class folder names}.

    Raises:
        ImageNetNotFoundError: root unset or missing; no train/ or val/; no class folders; class folders of train/
            and val/ differ; a class folder without images. The message names the folder and the expected layout.
    """
    root = root or os.environ.get(ENV_IMAGENET_DIR)
    if not root:
        raise ImageNetNotFoundError(
            f"no ImageNet folder given: set ${ENV_IMAGENET_DIR} (or pass imagenet_dir / --imagenet-dir) to a folder "
            f"laid out as {_LAYOUT}. ImageNet is never downloaded (its licence needs an account at image-net.org).")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise ImageNetNotFoundError(f"the ImageNet folder {root} is a file, not a folder: give the folder that holds "
                                    f"train/ and val/ ({ENV_IMAGENET_DIR}, imagenet_dir, --imagenet-dir). Expected "
                                    f"{_LAYOUT}.")
    if not root.is_dir():
        raise ImageNetNotFoundError(f"the ImageNet folder {root} does not exist. Expected {_LAYOUT}.")
    classes = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            found = sorted(p.name for p in root.iterdir())[:10]
            raise ImageNetNotFoundError(f"{folder} is missing (found in {root}: {found}). Expected {_LAYOUT}.")
        classes[split] = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        if not classes[split]:
            hint = _VALPREP if _images_in(folder) else f"Expected {_LAYOUT}."
            raise ImageNetNotFoundError(f"{folder} has no class folders. {hint}")
    if classes["train"] != classes["val"]:
        only_train = sorted(set(classes["train"]) - set(classes["val"]))
        only_val = sorted(set(classes["val"]) - set(classes["train"]))
        raise ImageNetNotFoundError(
            f"the class folders of {root / 'train'} ({len(classes['train'])}) and {root / 'val'} "
            f"({len(classes['val'])}) differ: only in train {only_train[:5]}, only in val {only_val[:5]}. "
            f"Both splits need the same <wnid> folders. {_VALPREP}")
    for split in ("train", "val"):
        empty = [c for c in classes[split] if not _images_in(root / split / c)]
        if empty:
            raise ImageNetNotFoundError(
                f"{len(empty)} class folder(s) of {root / split} hold no images ({', '.join(empty[:5])}); expected "
                f"*.JPEG files in every class folder. Check that the tarballs were fully extracted.")
    return {"root": root, "classes": classes["train"]}


# ---------------------------------------------------------------------------------------------------------------------
# Transforms, readers, datasets
# ---------------------------------------------------------------------------------------------------------------------

def train_transform(size: int):
    """RandomResizedCrop(size) + horizontal flip; returns uint8 (3, size, size). Normalising happens on the device.

    Ours: the standard "simple augmentation" of ImageNet training (RepVGG's A-series recipe uses the same).
    """
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                       v2.ToPureTensor()])


def val_transform(size: int):
    """Resize the short side to size·256/224, then CenterCrop(size); returns uint8 (3, size, size)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.ToImage(), v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size),
                       v2.ToPureTensor()])


def _read_pil(path: str):
    """ImageFolder's default loader: PIL decode, converted to RGB."""
    from torchvision.datasets.folder import default_loader

    return default_loader(path)


def _read_torchvision(path: str) -> torch.Tensor:
    """torchvision.io (libjpeg-turbo) decode of the file bytes to uint8 (3, H, W) RGB; PIL for what it cannot read."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except RuntimeError:  # rare odd files (e.g. a CMYK JPEG on old libjpeg builds)
        from torchvision.transforms.v2.functional import pil_to_tensor

        return pil_to_tensor(_read_pil(path))


def _has_torchvision_io() -> bool:
    try:
        from torchvision.io import decode_image  # noqa: F401  (may be removed after its deprecation in 0.29)
    except ImportError:
        return False
    return True


READERS = {"pil": _read_pil, **({"torchvision": _read_torchvision} if _has_torchvision_io() else {})}


def measure_decode_speed(folder: str | Path, n_images: int = 64, readers: tuple[str, ...] = tuple(READERS)
                         ) -> dict[str, float]:
    """Decoded images per second of each reader on the first `n_images` images under `folder` (one process).

    Files are read once before timing, so the numbers compare decoding (plus reading from the page cache).
    """
    files: list[str] = []
    for directory, subdirs, names in os.walk(folder):  # stops early: ImageNet's train/ has 1.28 M files
        subdirs.sort()
        files += [os.path.join(directory, n) for n in sorted(names) if n.lower().endswith(_IMAGE_SUFFIXES)]
        if len(files) >= n_images:
            break
    files = files[:n_images]
    if not files:
        raise ImageNetNotFoundError(f"no images under {folder}")
    for f in files:
        Path(f).read_bytes()
    speed = {}
    for name in readers:
        start = time.perf_counter()
        for f in files:
            image = READERS[name](f)
            if name == "pil":
                image.load()
        speed[name] = len(files) / (time.perf_counter() - start)
    return speed


@functools.lru_cache(maxsize=4)
def _fastest_reader(folder: str) -> str:
    speed = measure_decode_speed(folder, n_images=32)
    return max(speed, key=speed.get)


def image_folder(root: str | Path, split: str, size: int, *, train: bool, reader: str = "auto",
                 n_classes: int | None = None, per_class: int | None = None):
    """A torchvision ImageFolder of `root/split` with the course's transforms.

    Args:
        root: the ImageNet folder (already checked by `check_imagefolder`).
        split: "train" or "val".
        size: output image size in pixels.
        train: training transform (random crop + flip) or evaluation transform (resize + centre crop).
        reader: "pil", "torchvision" or "auto" (the faster of the two, measured once per folder and process).
        n_classes: keep the first `n_classes` class folders in sorted order (None: all). Labels are then 0..n-1, the
            first outputs of a 1000-class ImageNet network, whose classes are in the same sorted wnid order.
        per_class: keep the first `per_class` images of every class (None: all).
    """
    from torchvision import datasets

    if reader == "auto":
        reader = _fastest_reader(str(Path(root) / split))
    if reader not in READERS:
        raise ValueError(f"unknown reader {reader!r}; choose auto or one of {list(READERS)}")

    class Folder(datasets.ImageFolder):
        def find_classes(self, directory):  # only scan the kept classes (the full train/ has 1.28 M files)
            classes = super().find_classes(directory)[0][:n_classes]
            return classes, {c: i for i, c in enumerate(classes)}

    folder = Folder(str(Path(root) / split), transform=(train_transform if train else val_transform)(size),
                    loader=READERS[reader])
    if per_class is not None:  # samples are sorted by class, then file name
        taken: dict[int, int] = {}
        keep = []
        for path, label in folder.samples:
            taken[label] = taken.get(label, 0) + 1
            if taken[label] <= per_class:
                keep.append((path, label))
        folder.samples = folder.imgs = keep
        folder.targets = [label for _, label in keep]
    return folder


class ImageNetLoader:
    """A DataLoader over an ImageFolder that yields normalised (x, y) batches on `device`, for `train.fit`/`evaluate`.

    Training: `DistributedSampler` (shuffled with `(seed, epoch)`, `drop_last`, also for one process) so every rank
    takes an equal share of a fresh permutation; batches are full (`drop_last`), so all DDP ranks step equally.
    Evaluation: rank r reads images r, r+W, r+2W, ... in order, without padding. (`DistributedSampler` would pad the
    last ranks with repeated images, and `train.evaluate` all-reduces sums, so those would be counted twice.)
    Workers return uint8 images; conversion to float and normalisation run on the device (4x less to copy).

    Args:
        dataset: an `image_folder(...)`.
        batch_size: images per batch on this rank.
        train: training or evaluation behaviour (see above).
        device: where batches go; pinned memory and non-blocking copies on CUDA.
        seed: base seed of the shuffling and of the workers' augmentation.
        num_workers: DataLoader worker processes (0: load in this process).
        channels_last: return batches in NHWC memory format.
        rank, world_size: this process's place in DDP (default: `train.init_distributed()`).
        normalization: (mean, std) per channel on the [0, 1] scale (ImageNet's; `data.NORMALIZATION`).

    Raises:
        ValueError: a training split too small for one full batch on every rank.
    """

    def __init__(self, dataset, batch_size: int, *, train: bool, device: torch.device | str = "cpu", seed: int = 0,
                 num_workers: int = 0, channels_last: bool = False, rank: int | None = None,
                 world_size: int | None = None, normalization: tuple = data.NORMALIZATION):
        from torch.utils.data import DataLoader, DistributedSampler, Subset

        if rank is None or world_size is None:
            rank, world_size = init_distributed()
        self.device, self.train, self.seed, self.epoch = torch.device(device), train, seed, 0
        self.channels_last, self.num_workers = channels_last, num_workers
        self.mean = torch.tensor(normalization[0], device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(normalization[1], device=self.device).view(1, 3, 1, 1) * 255
        common = dict(batch_size=batch_size, num_workers=num_workers, pin_memory=self.device.type == "cuda",
                      persistent_workers=False)
        if train:
            self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                              drop_last=True)
            self.loader = DataLoader(dataset, sampler=self.sampler, drop_last=True, **common)
            if len(self.loader) == 0:
                raise ValueError(f"{len(dataset)} training images give no full batch of {batch_size} on each of "
                                 f"{world_size} process(es); lower batch_size or use more images")
        else:
            self.sampler = None
            self.loader = DataLoader(Subset(dataset, range(rank, len(dataset), world_size)), shuffle=False, **common)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation (and worker augmentation seeds) the next iteration uses."""
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Workers draw their augmentation seeds from this generator: an epoch's augmentation is reproducible.
        self.loader.generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for x, y in self.loader:  # x: uint8 (B, 3, S, S)
            x = x.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)


def make_smoke_imagefolder(dst: str | Path, n_classes: int = 4, per_class_train: int = 32, per_class_val: int = 16,
                           size: int = 64, root: str | Path | None = None) -> Path:
    """Write a small ImageFolder of real CIFAR-10 images, upscaled to `size` px (bicubic) and saved as JPEG.

    Classes are CIFAR-10's first `n_classes` (folders named after them); train images come from CIFAR-10's training
    split, val images from its test split. This is *not* ImageNet: it lets the ImageNet code path (folder reading,
    decoding, transforms, DDP, checkpoints, result files) run anywhere in seconds. A marker file records the
    parameters; an existing folder with the same parameters is reused.

    Raises:
        ValueError: more classes or images than CIFAR-10 has.
        DataNotFoundError: no CIFAR-10 found (see `data.load_cifar`).
    """
    from PIL import Image

    dst = Path(dst)
    params = dict(n_classes=n_classes, per_class_train=per_class_train, per_class_val=per_class_val, size=size)
    marker = dst / "smoke_imagefolder.json"
    if marker.exists() and read_json(marker) == params:
        return dst
    if not 1 <= n_classes <= 10 or per_class_train > 5000 or per_class_val > 1000:
        raise ValueError(f"CIFAR-10 has 10 classes of 5,000 train and 1,000 test images; got {params}")
    small = per_class_train <= 360 and per_class_val <= 85  # the lossless subset has >= 366 / >= 86 per class
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    for split, source, per_class in (("train", "train", per_class_train), ("val", "test", per_class_val)):
        images, labels = data.load_cifar("cifar10", source, root=root, subset="lossless" if small else None)
        for c in range(n_classes):
            folder = tmp / split / data.CIFAR10_CLASSES[c]
            folder.mkdir(parents=True, exist_ok=True)
            indices = torch.nonzero(labels == c).flatten()[:per_class].tolist()
            if len(indices) < per_class:
                raise ValueError(f"only {len(indices)} {split} images of class {c} were found, {per_class} asked for")
            for index in indices:
                pixels = images[index].permute(1, 2, 0).numpy()  # (32, 32, 3) uint8
                Image.fromarray(pixels).resize((size, size), Image.BICUBIC).save(
                    folder / f"{split}_{index:05d}.JPEG", quality=90)
    write_json_atomic(tmp / marker.name, params)
    if dst.exists():  # an older folder with other parameters (or another process won the race)
        shutil.rmtree(dst, ignore_errors=True)
    try:
        os.replace(tmp, dst)
    except OSError:  # another process renamed its identical folder first
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
