"""Tests for phs_optax_training.data: IDX, class folders, CIFAR pickles, tfds."""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from phs_optax_training import data
from phs_optax_training.data import dataset as dataset_module
from phs_optax_training.data import image_folders
from phs_optax_training.data import tfds as tfds_source

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SHARED_CIFAR10_ARCHIVE = Path("/work/shared/data/cifar10-jpeg.tar.gz")
IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


# ------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray, dtype: str | type = np.uint8) -> bytes:
    """Encodes ``array`` as an IDX file, independently of the module under test."""
    dtype = np.dtype(dtype)  # multi-byte types are given big-endian (">i4")
    header = bytes([0, 0, IDX_CODES[dtype], array.ndim])
    dims = np.array(array.shape, dtype=">u4").tobytes()
    return header + dims + np.asarray(array).astype(dtype).tobytes()


def write_idx(path: Path, array: np.ndarray, dtype: str | type = np.uint8) -> Path:
    payload = idx_bytes(array, dtype)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def random_idx_splits(seed: int, image_size: int = 28) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (12, image_size, image_size), np.uint8),
        "train_labels": rng.integers(0, 10, 12, np.uint8),
        "test_images": rng.integers(0, 256, (5, image_size, image_size), np.uint8),
        "test_labels": rng.integers(0, 10, 5, np.uint8),
    }


def write_fashion_mnist_dir(
    folder: Path, arrays: dict[str, np.ndarray], gzipped: bool
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gzipped else ""
    for (split, kind), stem in data.IDX_FILES.items():
        write_idx(folder / (stem + suffix), arrays[f"{split}_{kind}"])
    return folder


def write_png_tree(
    root: Path, images: dict[str, dict[str, list[np.ndarray]]]
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Writes ``images[split][class]`` as ``root/split/class/NNN.png``."""
    for split, classes in images.items():
        for class_name, arrays in classes.items():
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for index, array in enumerate(arrays):
                Image.fromarray(array.squeeze()).save(folder / f"{index:03d}.png")
    return images


def tiny_tree_images(
    class_names: list[str], size: tuple[int, int] = (5, 4), channels: int = 3
) -> dict[str, dict[str, list[np.ndarray]]]:
    """Two train and one test image per class, random pixels (height, width)."""
    rng = np.random.default_rng(0)
    shape = (*size, channels)
    return {
        split: {
            name: [rng.integers(0, 256, shape, np.uint8) for _ in range(count)]
            for name in class_names
        }
        for split, count in (("train", 2), ("test", 1))
    }


def make_tar_gz(source: Path, archive: Path, top_level: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=top_level)
    return archive


def channel_mean_std(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std accumulated in float64 without a float64 copy."""
    means, stds = [], []
    for channel in range(images.shape[-1]):
        values = images[..., channel]
        mean = values.mean(dtype=np.float64)
        mean_square = np.square(values).mean(dtype=np.float64)
        means.append(mean)
        stds.append(np.sqrt(mean_square - mean**2))
    return np.array(means), np.array(stds)


def pixels(dataset: data.Dataset, images: np.ndarray) -> np.ndarray:
    """Normalised images back to uint8 pixels."""
    return np.rint(dataset.denormalize(images)).astype(np.uint8)


def expected_split(
    images: dict[str, list[np.ndarray]], class_order: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    arrays = [a for name in class_order for a in images.get(name, [])]
    labels = [i for i, name in enumerate(class_order) for _ in images.get(name, [])]
    return np.stack(arrays), np.array(labels, np.int32)


@pytest.fixture
def no_system_dirs(monkeypatch, tmp_path):
    """System folders point to an empty directory."""
    empty = tmp_path / "empty_system_dir"
    empty.mkdir()
    monkeypatch.setattr(
        data, "SYSTEM_DATA_DIRS", {name: (str(empty),) for name in data.DATASET_NAMES}
    )


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path):
    """Never write to the user's cache (or tfds data dir) from tests."""
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    return tmp_path / "cache"


@pytest.fixture
def tfds_unreachable(monkeypatch):
    """Every tensorflow-datasets entry point fails as if offline."""

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds, "load", offline)
    monkeypatch.setattr(tfds, "data_source", offline)


# ------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trips(tmp_path, suffix, dtype):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) - (0 if dtype == np.uint8 else 7)
    path = write_idx(tmp_path / f"values.idx{suffix}", array, dtype)
    result = data.read_idx(path)
    assert result.shape == (2, 3, 4)
    assert result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def test_read_idx_labels_one_dimensional(tmp_path):
    labels = np.array([9, 0, 3, 7], np.uint8)
    result = data.read_idx(write_idx(tmp_path / "labels.gz", labels))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, labels)


def test_parse_idx_rejects_bad_magic_and_truncation():
    with pytest.raises(ValueError, match="magic"):
        data.parse_idx(b"\x01\x00\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="bytes"):
        data.parse_idx(idx_bytes(np.zeros((3, 2), np.uint8))[:-1])


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_fashion_mnist_from_data_dir_round_trips(tmp_path, no_system_dirs, gzipped):
    arrays = random_idx_splits(seed=1)
    folder = write_fashion_mnist_dir(tmp_path / "fmnist", arrays, gzipped)
    dataset = data.load_dataset("fashion_mnist", data_dir=folder)

    assert dataset.source == f"data_dir:{folder}"
    assert dataset.name == "fashion_mnist" and dataset.num_classes == 10
    assert dataset.train_images.shape == (12, 28, 28, 1)
    assert dataset.train_images.dtype == np.float32
    assert dataset.train_labels.dtype == np.int32
    for split in data.SPLITS:
        np.testing.assert_array_equal(
            getattr(dataset, f"{split}_labels"), arrays[f"{split}_labels"]
        )
        restored = pixels(dataset, getattr(dataset, f"{split}_images"))
        np.testing.assert_array_equal(restored[..., 0], arrays[f"{split}_images"])
    expected_mean = arrays["train_images"].mean() / 255.0
    np.testing.assert_allclose(dataset.mean, [expected_mean], rtol=1e-6)


def test_data_dir_beats_system_folder(tmp_path, monkeypatch):
    system = write_fashion_mnist_dir(tmp_path / "system", random_idx_splits(2), True)
    local_arrays = random_idx_splits(3)
    local = write_fashion_mnist_dir(tmp_path / "local", local_arrays, False)
    monkeypatch.setattr(data, "SYSTEM_DATA_DIRS", {"fashion_mnist": (str(system),)})

    from_local = data.load_dataset("fashion_mnist", data_dir=local)
    assert from_local.source == f"data_dir:{local}"
    np.testing.assert_array_equal(from_local.train_labels, local_arrays["train_labels"])

    from_system = data.load_dataset("fashion_mnist", data_dir=tmp_path / "missing")
    assert from_system.source == f"system:{system}"


def test_malformed_idx_in_data_dir_raises(tmp_path, no_system_dirs):
    arrays = random_idx_splits(4)
    arrays["train_labels"] = arrays["train_labels"][:-1]
    folder = write_fashion_mnist_dir(tmp_path / "bad", arrays, False)
    with pytest.raises(ValueError, match="do not match"):
        data.load_dataset("fashion_mnist", data_dir=folder)


@pytest.mark.skipif(
    not data.find_idx_files(DEBIAN_FASHION_MNIST),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian_package():
    dataset = data.load_dataset("fashion_mnist")
    assert dataset.source == f"system:{DEBIAN_FASHION_MNIST}"
    assert dataset.train_images.shape == (60_000, 28, 28, 1)
    assert dataset.test_images.shape == (10_000, 28, 28, 1)
    assert dataset.train_labels.shape == (60_000,)
    assert dataset.test_labels.shape == (10_000,)
    assert dataset.num_classes == 10
    np.testing.assert_array_equal(np.bincount(dataset.train_labels), [6000] * 10)
    mean, std = channel_mean_std(dataset.train_images)
    np.testing.assert_allclose(mean, [0.0], atol=1e-4)
    np.testing.assert_allclose(std, [1.0], atol=1e-4)
    np.testing.assert_allclose(dataset.mean, [0.2860], atol=1e-3)


# ------------------------------------------------------------ class folders


@pytest.mark.parametrize("channels", [1, 3], ids=["grayscale", "rgb"])
def test_image_folder_round_trips_with_sorted_labels(tmp_path, channels):
    classes = ["zebra", "cat", "dog"]
    images = write_png_tree(
        tmp_path / "tree", tiny_tree_images(classes, (5, 4), channels)
    )
    dataset = data.load_image_folder(tmp_path / "tree", cache_dir=tmp_path / "c")

    assert dataset.class_names == ("cat", "dog", "zebra")
    assert dataset.num_classes == 3
    assert dataset.train_images.shape == (6, 5, 4, channels)
    assert dataset.mean.shape == dataset.std.shape == (channels,)
    for split in data.SPLITS:
        expected_images, expected_labels = expected_split(
            images[split], dataset.class_names
        )
        np.testing.assert_array_equal(
            getattr(dataset, f"{split}_labels"), expected_labels
        )
        restored = pixels(dataset, getattr(dataset, f"{split}_images"))
        np.testing.assert_array_equal(restored, expected_images)


def test_image_folder_from_tar_gz_with_top_level_folder(tmp_path):
    images = write_png_tree(tmp_path / "tree", tiny_tree_images(["b", "a"]))
    archive = make_tar_gz(tmp_path / "tree", tmp_path / "mine.tar.gz", "mine")
    dataset = data.load_image_folder(archive)

    assert dataset.name == "mine"
    assert dataset.source == f"image_folder:{archive}"
    assert dataset.class_names == ("a", "b")
    expected_images, expected_labels = expected_split(images["test"], ("a", "b"))
    np.testing.assert_array_equal(dataset.test_labels, expected_labels)
    np.testing.assert_array_equal(pixels(dataset, dataset.test_images), expected_images)


def test_image_folder_cache_is_used_and_invalidated(
    tmp_path, isolated_cache, monkeypatch
):
    write_png_tree(tmp_path / "tree", tiny_tree_images(["a", "b"]))
    archive = make_tar_gz(tmp_path / "tree", tmp_path / "imgs.tar.gz", "imgs")
    first = data.read_image_folder(archive)
    cache_files = list(isolated_cache.glob("imgs-*.npz"))
    assert len(cache_files) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is warm")

    with monkeypatch.context() as patch:
        patch.setattr(image_folders, "_decode_image", no_decoding)
        cached = data.read_image_folder(archive)
    np.testing.assert_array_equal(cached.train_images, first.train_images)
    np.testing.assert_array_equal(cached.test_labels, first.test_labels)
    assert cached.class_names == first.class_names

    stat = archive.stat()
    new_mtime = stat.st_mtime_ns + 10**9
    os.utime(archive, ns=(stat.st_atime_ns, new_mtime))
    data.read_image_folder(archive)
    assert len(list(isolated_cache.glob("imgs-*.npz"))) == 2


def test_image_folder_without_cache_writes_nothing(tmp_path, isolated_cache):
    write_png_tree(tmp_path / "tree", tiny_tree_images(["a"]))
    data.read_image_folder(tmp_path / "tree", use_cache=False)
    assert not isolated_cache.exists()


def test_mismatched_image_sizes_raise(tmp_path):
    images = tiny_tree_images(["a", "b"], (5, 4))
    images["test"]["b"] = [np.zeros((6, 4, 3), np.uint8)]
    write_png_tree(tmp_path / "tree", images)
    with pytest.raises(data.ImageFolderError, match="same size.*4x6"):
        data.load_image_folder(tmp_path / "tree", use_cache=False)


def test_missing_test_split_raises(tmp_path):
    write_png_tree(tmp_path / "tree", {"train": tiny_tree_images(["a"])["train"]})
    with pytest.raises(data.ImageFolderError, match="test/<class>"):
        data.load_image_folder(tmp_path / "tree", use_cache=False)


def test_cifar10_class_folders_use_official_order(tmp_path, no_system_dirs):
    images = tiny_tree_images(sorted(data.CIFAR10_CLASSES), (32, 32))
    for split in images:  # one image per class keeps the test fast
        images[split] = {name: arrays[:1] for name, arrays in images[split].items()}
    write_png_tree(tmp_path / "cifar" / "cifar10-jpeg", images)
    dataset = data.load_dataset("cifar10", data_dir=tmp_path / "cifar")

    assert dataset.class_names == data.CIFAR10_CLASSES
    assert dataset.class_names[0] == "airplane" and dataset.class_names[9] == "truck"
    np.testing.assert_array_equal(dataset.train_labels, np.arange(10))
    expected_images, _ = expected_split(images["train"], data.CIFAR10_CLASSES)
    np.testing.assert_array_equal(
        pixels(dataset, dataset.train_images), expected_images
    )


def write_cifar10_batches(folder: Path) -> dict[str, np.ndarray]:
    """Official python-pickle layout with 2 images per batch."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    written = {}
    for name in (*data.CIFAR10_TRAIN_BATCHES, data.CIFAR10_TEST_BATCH):
        images = rng.integers(0, 256, (2, 32, 32, 3), np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, 2)]
        batch = {
            b"data": images.transpose(0, 3, 1, 2).reshape(2, 3072),
            b"labels": labels,
        }
        (folder / name).write_bytes(pickle.dumps(batch))
        written[name] = (images, np.array(labels))
    return written


@pytest.mark.parametrize("as_archive", [False, True], ids=["folder", "tar.gz"])
def test_cifar10_python_batches(tmp_path, no_system_dirs, as_archive):
    written = write_cifar10_batches(tmp_path / "src" / "cifar-10-batches-py")
    source = tmp_path / "src"
    if as_archive:
        source = make_tar_gz(
            source / "cifar-10-batches-py",
            tmp_path / "cifar-10-python.tar.gz",
            "cifar-10-batches-py",
        )
    dataset = data.load_dataset("cifar10", data_dir=source)

    assert dataset.train_images.shape == (10, 32, 32, 3)
    test_images, test_labels = written[data.CIFAR10_TEST_BATCH]
    np.testing.assert_array_equal(dataset.test_labels, test_labels)
    np.testing.assert_array_equal(pixels(dataset, dataset.test_images), test_images)
    assert dataset.class_names == data.CIFAR10_CLASSES


def test_channel_mean_std_is_exact_and_safe_for_constant_channels():
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (7, 3, 3, 2), np.uint8)
    images[..., 1] = 42
    mean, std = data.channel_mean_std(images)
    expected = images[..., 0].astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, [expected.mean(), 42 / 255.0], rtol=1e-6)
    np.testing.assert_allclose(std, [expected.std(), 1.0], rtol=1e-6)


@pytest.mark.parametrize("shape", [(700, 28, 28, 1), (200, 32, 32, 3), (0, 4, 4, 3)])
def test_normalized_pixels_are_scaled_then_standardized_per_channel(shape):
    # 700 and 200 images span several of the lookup's chunks.
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    mean = np.linspace(0.2, 0.5, shape[-1]).astype(np.float32)
    std = np.linspace(0.3, 0.25, shape[-1]).astype(np.float32)
    expected = ((images / 255.0 - mean.astype(np.float64)) / std).astype(np.float32)
    normalized = dataset_module._normalize_pixels(images, mean, std)
    assert normalized.dtype == np.float32
    np.testing.assert_array_equal(normalized, expected)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "x"))
    assert data.default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv(data.CACHE_ENV_VAR)
    assert data.default_cache_dir() == Path("~/.cache/phs_optax").expanduser()


# ------------------------------------------------------ tensorflow-datasets


@pytest.mark.parametrize(
    ("name", "image_shape"),
    [("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))],
)
def test_tfds_source_with_mock_data(no_system_dirs, name, image_shape):
    """The real `load_dataset` code path, with tfds serving random examples."""
    with tfds.testing.mock_data(num_examples=6):
        dataset = data.load_dataset(name)
    assert dataset.source == f"tfds:{name}"
    assert dataset.train_images.shape == (6, *image_shape)
    assert dataset.test_images.shape == (6, *image_shape)
    assert dataset.train_images.dtype == np.float32
    assert dataset.train_labels.dtype == np.int32
    assert 0 <= dataset.train_labels.min() and dataset.train_labels.max() < 10
    assert dataset.num_classes == 10
    np.testing.assert_allclose(dataset.train_images.mean(axis=(0, 1, 2)), 0, atol=1e-5)


def test_no_source_raises_with_how_to(no_system_dirs, tfds_unreachable, tmp_path):
    with pytest.raises(data.DataUnavailableError) as error:
        data.load_dataset("fashion_mnist", data_dir=tmp_path / "nothing_here")
    message = str(error.value)
    assert "\n" not in message
    assert "dataset-fashion-mnist" in message and "apt-get install" in message
    assert "--data_dir" in message and "t10k-images-idx3-ubyte" in message
    assert "ConnectionError" in message


def test_no_source_for_cifar10_mentions_data_dir(no_system_dirs, tfds_unreachable):
    with pytest.raises(data.DataUnavailableError, match="--data_dir.*train/<class>"):
        data.load_dataset("cifar10")


@pytest.mark.skipif(
    tfds_source._tensorflow_installed(),
    reason="with tensorflow installed, tfds would try to download",
)
def test_unprepared_tfds_without_tensorflow_fails_fast(no_system_dirs):
    started = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="tensorflow-datasets"):
        data.load_dataset("cifar10")
    assert time.perf_counter() - started < 10


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("mnist")


# -------------------------------------------------------- real CIFAR archive


@pytest.mark.slow
@pytest.mark.skipif(
    not SHARED_CIFAR10_ARCHIVE.is_file(), reason="CIFAR-10 JPEG archive not present"
)
def test_real_cifar10_jpeg_archive(isolated_cache):
    cold = data.load_dataset("cifar10", data_dir=SHARED_CIFAR10_ARCHIVE)
    warm = data.load_dataset("cifar10", data_dir=SHARED_CIFAR10_ARCHIVE)
    for dataset in (cold, warm):
        assert dataset.train_images.shape == (50_000, 32, 32, 3)
        assert dataset.test_images.shape == (10_000, 32, 32, 3)
        np.testing.assert_array_equal(np.bincount(dataset.train_labels), [5000] * 10)
    np.testing.assert_array_equal(cold.train_images, warm.train_images)
    mean, std = channel_mean_std(warm.train_images)
    np.testing.assert_allclose(mean, [0.0] * 3, atol=1e-4)
    np.testing.assert_allclose(std, [1.0] * 3, atol=1e-4)
