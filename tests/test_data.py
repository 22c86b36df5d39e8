import shutil

import pytest
import torch

from course_lib import data


def test_cifar10_test_split_shapes_dtypes_and_counts(data_dir):
    images, labels = data.load_cifar("cifar10", "test", root=data_dir)
    assert images.shape == (10000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_cifar10_train_follows_official_label_order(data_dir):
    images, labels = data.load_cifar("cifar10", "train", root=data_dir)
    assert images.shape == (50000, 3, 32, 32)
    assert labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # the official first labels (shared/data README)
    assert torch.bincount(labels).tolist() == [5000] * 10


def test_lossless_subset_and_cifar100_sample(data_dir):
    x, y = data.load_cifar("cifar10", "train", root=data_dir, subset="lossless")
    assert x.shape == (4000, 3, 32, 32)
    x100, y100 = data.load_cifar("cifar100", "train", root=data_dir, subset="sample")
    assert x100.shape == (100, 3, 32, 32) and y100[:5].tolist() == [19, 29, 0, 11, 1]


def test_npz_hwc_is_converted_to_chw(data_dir):
    import numpy as np

    raw = np.load(data_dir / "cifar10_lossless_subset.npz")["x_test"][0]  # (32, 32, 3)
    images, _ = data.load_cifar("cifar10", "test", root=data_dir, subset="lossless")
    assert torch.equal(images[0], torch.from_numpy(raw).permute(2, 0, 1))


def test_torchvision_folder_is_read(tmp_path, data_dir):
    import subprocess
    import sys

    subprocess.run([sys.executable, str(data_dir / "make_torchvision_layout.py"), str(tmp_path)], check=True,
                   capture_output=True)
    from_folder = data.load_cifar("cifar10", "test", root=tmp_path)
    from_npz = data.load_cifar("cifar10", "test", root=data_dir)
    assert torch.equal(from_folder[0], from_npz[0]) and torch.equal(from_folder[1], from_npz[1])


def test_missing_data_names_every_place_and_the_fix(isolated_data):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_cifar("cifar10", "test")
    text = str(err.value)
    assert str(isolated_data) in text and "COURSE_DATA_DIR" in text and "download" in text


def test_wrong_sha256_is_a_clear_error(tmp_path, data_dir):
    bad = tmp_path / "cifar100_sample.npz"
    shutil.copy(data_dir / "cifar100_sample.npz", bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(RuntimeError, match="sha256"):
        data.load_cifar("cifar100", "train", root=tmp_path, subset="sample")


def test_missing_checkpoint_without_network_is_a_clear_error(isolated_data, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(data.DataNotFoundError, match="Download failed"):
        data.fetch_registered("pretrained/resnet20-12fca82f.th")


def test_bad_names_are_value_errors():
    with pytest.raises(ValueError, match="cifar10 or cifar100"):
        data.load_cifar("mnist", "train")
    with pytest.raises(ValueError, match="train or test"):
        data.load_cifar("cifar10", "val")
    with pytest.raises(ValueError, match="lossless"):
        data.load_cifar("cifar10", "train", subset="tiny")


def _toy_split(n=64):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(n) % 10


def test_loader_is_reproducible_per_seed_and_epoch():
    images, labels = _toy_split()
    first = [x for x, _ in data.CifarLoader(images, labels, 16, train=True, seed=1)]
    again = [x for x, _ in data.CifarLoader(images, labels, 16, train=True, seed=1)]
    other = data.CifarLoader(images, labels, 16, train=True, seed=1)
    other.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], next(iter(other))[0])


def test_train_loader_drops_last_and_eval_covers_all_in_order():
    images, labels = _toy_split(70)
    train = data.CifarLoader(images, labels, 16, train=True)
    assert len(train) == 4 and sum(len(y) for _, y in train) == 64
    evaluation = data.CifarLoader(images, labels, 16, train=False)
    assert len(evaluation) == 5 and torch.equal(torch.cat([y for _, y in evaluation]), labels)


def test_augmentation_is_a_shifted_or_flipped_copy():
    images, labels = _toy_split(32)
    loader = data.CifarLoader(images, labels, 32, train=True, normalization=((0, 0, 0), (1 / 255,) * 3))
    batch_x, batch_y = next(iter(loader))
    padded = torch.nn.functional.pad(images.float(), (4, 4, 4, 4))
    for i in range(len(batch_y)):
        crop = batch_x[i]
        matches = [
            torch.equal(crop, view)
            for j in range(len(images))
            for dy in range(9)
            for dx in range(9)
            for view in (padded[j, :, dy:dy + 32, dx:dx + 32], padded[j, :, dy:dy + 32, dx:dx + 32].flip(2))
            if labels[j] == batch_y[i]
        ]
        assert any(matches), f"batch image {i} is not a crop/flip of a source image"


def test_loader_shards_ranks_disjointly():
    images, labels = _toy_split(64)
    ranks = [data.CifarLoader(images, torch.arange(64), 8, train=True, rank=r, world_size=2) for r in range(2)]
    seen = [torch.cat([y for _, y in loader]) for loader in ranks]
    assert len(set(seen[0].tolist()) & set(seen[1].tolist())) == 0
    assert len(seen[0]) == len(seen[1]) == 32


def test_compact_copy_reads_like_the_set_it_was_written_from(tmp_path, data_dir):
    import numpy as np

    from course_lib import experiments
    from course_lib.errors import ConfigError

    path = data.write_compact_cifar(tmp_path, n_train=200, n_test=50, root=data_dir)
    assert path.name == data.COMPACT_NAMES["cifar10"] and data.locate_cifar("cifar10", tmp_path) == path
    x, y = data.load_cifar("cifar10", "train", root=tmp_path)
    full_x, full_y = data.load_cifar("cifar10", "train", root=data_dir)
    assert x.shape == (200, 3, 32, 32) and x.dtype == torch.uint8 and torch.equal(y, full_y[:200])
    # The offline set was decoded from quality-75 JPEGs; re-encoding at quality 75 gives back nearly the same pixels.
    assert (x.float() - full_x[:200].float()).abs().mean() < 1.0
    assert data.load_cifar("cifar10", "test", root=tmp_path)[0].shape == (50, 3, 32, 32)
    with pytest.raises(ConfigError, match="holds 200 cifar10 train images"):  # never silently fewer images
        experiments.check_data(experiments.cifar_config("smoke", data_dir=str(tmp_path)))
    experiments.check_data(experiments.cifar_config("smoke", data_dir=str(tmp_path), n_train=200, n_test=50))
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["x_train_jpeg"][100] ^= 0xFF
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / path.name, **arrays)
    with pytest.raises(RuntimeError, match="corrupt"):
        data.load_cifar("cifar10", "train", root=tmp_path / "bad")
