"""Tests for phs_optax_training.data: IDX, class folders, CIFAR pickles, tfds."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from phs_optax_training import data, errors
from phs_optax_training.data import cache as cache_module
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

    from_system = data.load_dataset("fashion_mnist")
    assert from_system.source == f"system:{system}"


def test_malformed_idx_in_data_dir_raises(tmp_path, no_system_dirs):
    arrays = random_idx_splits(4)
    arrays["train_labels"] = arrays["train_labels"][:-1]
    folder = write_fashion_mnist_dir(tmp_path / "bad", arrays, False)
    with pytest.raises(ValueError, match="holds 12 images but its labels file"):
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


def test_no_source_raises_with_how_to(no_system_dirs, tfds_unreachable):
    with pytest.raises(data.DataUnavailableError) as error:
        data.load_dataset("fashion_mnist")
    assert not isinstance(error.value, data.DataDirError)
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


# ------------------------------- explicit inputs are binding, damage is named

REPO = Path(__file__).resolve().parents[1]
CLI_FLAGS = [
    "--max_train_examples=64",
    "--max_test_examples=32",
    "--num_epochs=1",
    "--batch_size=32",
    "--noplots",
    "--quiet",
    "--compilation_cache_dir=",
]


@pytest.fixture
def system_fashion_mnist(monkeypatch, tmp_path):
    """A usable Fashion-MNIST in the system folder: a data_dir must not fall back
    to it."""
    folder = write_fashion_mnist_dir(tmp_path / "system", random_idx_splits(7), True)
    monkeypatch.setattr(
        data, "SYSTEM_DATA_DIRS", {"fashion_mnist": (str(folder),), "cifar10": ()}
    )
    return folder


def assert_one_line(message: str) -> str:
    assert message and "\n" not in message, message
    return message


def _fashion_mnist_layout(tmp_path: Path, layout: str) -> Path:
    if layout == "missing":
        return tmp_path / "no_such_folder"
    if layout == "empty":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    if layout == "file":
        (tmp_path / "a_file").write_text("not a folder")
        return tmp_path / "a_file"
    folder = write_fashion_mnist_dir(tmp_path / "partial", random_idx_splits(1), True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    return folder


@pytest.mark.parametrize(
    ("layout", "problem"),
    [
        ("missing", "does not exist"),
        (
            "empty",
            "holds no fashion_mnist files (expected train-images-idx3-ubyte[.gz]",
        ),
        ("file", "is a file; fashion_mnist needs a folder holding"),
        ("partial", "holds an incomplete fashion_mnist: it lacks t10k-labels-idx1"),
    ],
    ids=["missing", "empty", "file", "partial"],
)
def test_a_data_dir_without_the_dataset_is_an_error_not_a_fallback(
    tmp_path, system_fashion_mnist, layout, problem
):
    given = _fashion_mnist_layout(tmp_path, layout)
    with pytest.raises(data.DataDirError) as error:
        data.load_dataset("fashion_mnist", data_dir=given)
    assert error.value.exit_code == errors.USAGE
    assert isinstance(error.value, errors.UsageError)
    assert isinstance(error.value, data.DataUnavailableError)
    message = assert_one_line(str(error.value))
    assert message.startswith(f"--data_dir={given} {problem}"), message


@pytest.mark.parametrize(
    ("layout", "problem"),
    [
        ("empty", "holds no cifar10 files (expected the cifar-10-batches-py folder"),
        ("partial", "cifar-10-batches-py lacks data_batch_5, test_batch"),
        ("not_an_archive", "is neither a folder nor a .tar.gz/.tgz/.tar archive"),
    ],
    ids=["empty", "partial", "not_an_archive"],
)
def test_a_data_dir_without_cifar10_is_an_error(
    tmp_path, no_system_dirs, layout, problem
):
    given = tmp_path / layout
    if layout == "empty":
        given.mkdir()
    elif layout == "partial":
        write_cifar10_batches(given / "cifar-10-batches-py")
        for name in ("data_batch_5", "test_batch"):
            (given / "cifar-10-batches-py" / name).unlink()
    else:
        given = tmp_path / "cifar.zip"
        given.write_bytes(b"PK")
    with pytest.raises(data.DataDirError) as error:
        data.load_dataset("cifar10", data_dir=given)
    assert error.value.exit_code == errors.USAGE
    message = assert_one_line(str(error.value))
    assert message.startswith(f"--data_dir={given} ") and problem in message, message


def _flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def _damage_idx(folder: Path, case: str) -> str:
    """Damages one file of a Fashion-MNIST folder; returns the file's name."""
    images = folder / "train-images-idx3-ubyte"
    gz = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte"
    if case == "gzip truncated":
        gz.write_bytes(gz.read_bytes()[:4000])
    elif case == "not gzip":
        gz.write_bytes(gzip.decompress(gz.read_bytes()))
    elif case == "gzip checksum":
        _flip_byte(gz, -8)  # the CRC-32 in the gzip trailer
    elif case == "bad magic":
        _flip_byte(images, 2)
    elif case == "byte count":
        images.write_bytes(images.read_bytes()[:-3])
    elif case == "lengths differ":
        write_idx(labels, np.zeros(11, np.uint8))
    elif case == "label out of range":
        write_idx(labels, np.full(12, 10, np.uint8))
    elif case == "not bytes":
        write_idx(images, np.zeros((12, 28, 28)), ">i4")
    return gz.name if "gzip" in case else (labels if "label" in case else images).name


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        (
            "gzip truncated",
            "is truncated: gzip stream ended early (expected 9,424 bytes",
        ),
        ("not gzip", "is not gzip-compressed"),
        ("gzip checksum", "is corrupt: gzip data"),
        ("bad magic", "is not an IDX file (bad magic number 00 00 f7 03"),
        ("byte count", "is truncated: its IDX header says shape (12, 28, 28) of uint8"),
        (
            "lengths differ",
            "holds 12 images but its labels file train-labels-idx1-ubyte 11",
        ),
        ("label out of range", "holds label 10 at position 0; expected labels 0 to 9"),
        ("not bytes", "holds int32 values of shape (12, 28, 28); expected images as"),
    ],
    ids=[
        "gzip truncated",
        "not gzip",
        "gzip checksum",
        "bad magic",
        "byte count",
        "lengths differ",
        "label out of range",
        "not bytes",
    ],
)
def test_a_damaged_idx_file_is_named_with_what_was_expected(
    tmp_path, system_fashion_mnist, case, problem
):
    gzipped = "gzip" in case
    folder = write_fashion_mnist_dir(tmp_path / "fm", random_idx_splits(4), gzipped)
    name = _damage_idx(folder, case)
    with pytest.raises(data.DataFileError) as error:
        data.load_dataset("fashion_mnist", data_dir=folder)
    assert error.value.exit_code == errors.UNREADABLE
    assert isinstance(error.value, errors.UnreadableError)
    message = assert_one_line(str(error.value))
    assert message.startswith(f"{folder / name} {problem}"), message


def test_a_damaged_file_in_a_system_folder_is_an_error_too(
    system_fashion_mnist, tfds_unreachable
):
    (system_fashion_mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08")
    with pytest.raises(data.DataFileError, match="t10k-labels-idx1-ubyte.gz is trunc"):
        data.load_dataset("fashion_mnist")


class _RunsCode:
    """Unpickling this runs ``touch marker``: what a hostile batch file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_cifar10_batch_that_would_run_code_is_refused_unrun(tmp_path, no_system_dirs):
    folder = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar10_batches(folder)
    marker = tmp_path / "ran"
    hostile = {b"data": _RunsCode(marker), b"labels": [1, 2]}
    (folder / "test_batch").write_bytes(pickle.dumps(hostile))
    with pytest.raises(data.DataFileError) as error:
        data.load_dataset("cifar10", data_dir=tmp_path / "src")
    assert not marker.exists()
    message = assert_one_line(str(error.value))
    assert "cannot be unpickled (UnpicklingError: " in message
    assert "system is not allowed in a CIFAR-10 batch" in message


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_batches_pickled_with_either_protocol_load(
    tmp_path, no_system_dirs, protocol
):
    folder = tmp_path / "src" / "cifar-10-batches-py"
    written = write_cifar10_batches(folder)
    for name in written:  # the release itself is protocol 2, from Python 2
        batch = pickle.loads((folder / name).read_bytes())
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    dataset = data.load_dataset("cifar10", data_dir=tmp_path / "src")
    np.testing.assert_array_equal(dataset.test_labels, written["test_batch"][1])
    assert dataset.train_images.shape == (10, 32, 32, 3)


def _damage_cifar10(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A CIFAR-10 source with one damaged part; returns it and the part's name."""
    folder = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar10_batches(folder)
    batch = folder / "test_batch"
    if case == "unpicklable":
        batch.write_bytes(batch.read_bytes()[:100])
    elif case == "wrong shape":
        batch.write_bytes(
            pickle.dumps({b"data": np.zeros((2, 100)), b"labels": [1, 2]})
        )
    elif case == "labels count":
        pixels = np.zeros((2, 3072), np.uint8)
        batch.write_bytes(pickle.dumps({b"data": pixels, b"labels": [1, 2, 3]}))
    if case in ("unpicklable", "wrong shape", "labels count"):
        return tmp_path / "src", str(batch)
    archive = make_tar_gz(folder, tmp_path / "cifar-10-python.tar.gz", folder.name)
    if case == "archive truncated":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    elif case == "archive checksum":
        _flip_byte(archive, -8)
    elif case == "not an archive":
        archive.write_bytes(b"not a tar archive at all" * 40)
    elif case == "archive lacks a batch":
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder / "data_batch_1", arcname=f"{folder.name}/data_batch_1")
    return archive, str(archive)


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("unpicklable", "cannot be unpickled (UnpicklingError"),
        ("wrong shape", "holds data of shape (2, 100) and type float64; expected N x"),
        ("labels count", "holds 2 images but labels of shape (3,)"),
        ("archive truncated", "is truncated: the archive ends early"),
        ("archive checksum", "is corrupt (CRC check failed"),
        ("not an archive", "is not a readable tar archive"),
        ("archive lacks a batch", "lacks data_batch_2, data_batch_3"),
    ],
    ids=[
        "unpicklable",
        "wrong shape",
        "labels count",
        "archive truncated",
        "archive checksum",
        "not an archive",
        "archive lacks a batch",
    ],
)
def test_a_damaged_cifar10_source_is_named(tmp_path, no_system_dirs, case, problem):
    source, name = _damage_cifar10(tmp_path, case)
    with pytest.raises(data.DataFileError) as error:
        data.load_dataset("cifar10", data_dir=source)
    assert error.value.exit_code == errors.UNREADABLE
    message = assert_one_line(str(error.value))
    assert message.startswith(name) and problem in message, message


@pytest.mark.parametrize("as_archive", [False, True], ids=["folder", "tar.gz"])
@pytest.mark.parametrize("damage", ["not an image", "truncated"])
def test_an_image_that_fails_to_decode_is_named(tmp_path, as_archive, damage):
    write_png_tree(tmp_path / "tree", tiny_tree_images(["a", "b"]))
    broken = tmp_path / "tree" / "test" / "b" / "000.png"
    payload = broken.read_bytes()
    broken.write_bytes(b"plain text" if damage == "not an image" else payload[:60])
    source, name = tmp_path / "tree", str(broken)
    if as_archive:
        source = make_tar_gz(tmp_path / "tree", tmp_path / "imgs.tar.gz", "imgs")
        name = f"imgs/test/b/000.png in {source}"
    with pytest.raises(data.DataFileError) as error:
        data.read_image_folder(source, use_cache=False)
    assert error.value.exit_code == errors.UNREADABLE
    message = assert_one_line(str(error.value))
    assert message.startswith(f"{name} cannot be decoded"), message


def test_a_truncated_image_archive_is_named(tmp_path):
    write_png_tree(tmp_path / "tree", tiny_tree_images(["a", "b"]))
    archive = make_tar_gz(tmp_path / "tree", tmp_path / "imgs.tar.gz", "imgs")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(data.DataFileError, match=f"^{archive} is truncated"):
        data.read_image_folder(archive, use_cache=False)


def test_an_unusable_class_folder_tree_is_a_usage_error(tmp_path):
    write_png_tree(tmp_path / "tree", {"train": tiny_tree_images(["a"])["train"]})
    with pytest.raises(data.ImageFolderError) as error:
        data.read_image_folder(tmp_path / "tree", use_cache=False)
    assert error.value.exit_code == errors.USAGE


def _damage_cache(cache_file: Path, damage: str) -> None:
    if damage == "truncated":
        cache_file.write_bytes(cache_file.read_bytes()[:200])
    elif damage == "not a zip":
        cache_file.write_bytes(b"garbage")
    else:  # a well-formed .npz whose arrays do not fit together
        with np.load(cache_file) as arrays:
            contents = dict(arrays)
        contents["train_labels"] = contents["train_labels"][:-1]
        with open(cache_file, "wb") as file:
            np.savez(file, **contents)


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "inconsistent"])
def test_a_damaged_cache_file_is_decoded_again_and_rewritten(
    tmp_path, isolated_cache, caplog, damage
):
    write_png_tree(tmp_path / "tree", tiny_tree_images(["a", "b"]))
    first = data.read_image_folder(tmp_path / "tree")
    (cache_file,) = isolated_cache.glob("tree-*.npz")
    _damage_cache(cache_file, damage)

    with caplog.at_level(logging.WARNING, logger="phs_optax_training.data"):
        again = data.read_image_folder(tmp_path / "tree")
    np.testing.assert_array_equal(again.train_images, first.train_images)
    np.testing.assert_array_equal(again.train_labels, first.train_labels)
    (warning,) = [r.getMessage() for r in caplog.records if "cache" in r.getMessage()]
    assert_one_line(warning)
    assert str(cache_file) in warning and "decoding" in warning
    rewritten = cache_module.read_cache(cache_file)
    np.testing.assert_array_equal(rewritten.train_labels, first.train_labels)


def _unwritable_workdir(tmp_path: Path, case: str) -> Path:
    if case == "under a file":
        (tmp_path / "a_file").write_text("x")
        return tmp_path / "a_file" / "run"
    if case == "a file":
        (tmp_path / "a_file").write_text("x")
        return tmp_path / "a_file"
    if case == "read-only folder":
        (tmp_path / "ro").mkdir(mode=0o555)
        return tmp_path / "ro"
    return Path("/proc/phs_optax_workdir")


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("under a file", "cannot create the workdir {}: Not a directory"),
        ("a file", "cannot use the workdir {}: it is a file, not a folder"),
        ("read-only folder", "cannot write in the workdir {}: Permission denied"),
        ("in /proc", "cannot create the workdir {}: "),
    ],
    ids=["under a file", "a file", "read-only folder", "in /proc"],
)
def test_an_unwritable_workdir_is_one_line_naming_it(tmp_path, case, problem):
    from phs_optax_training import train_lib

    if case == "read-only folder" and os.geteuid() == 0:
        pytest.skip("root may write in a read-only folder")
    if case == "in /proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc")
    workdir = _unwritable_workdir(tmp_path, case)
    with pytest.raises(errors.UnreadableError) as error:
        train_lib.make_workdir(workdir)
    assert error.value.exit_code == errors.UNREADABLE
    assert assert_one_line(str(error.value)).startswith(problem.format(workdir))


def run_cli_in_process(argv, capsys) -> tuple[int, list[str]]:
    from phs_optax_training import cli

    cli.FLAGS.unparse_flags()
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.run(["train.py", *argv, *CLI_FLAGS])
    finally:
        cli.FLAGS.unparse_flags()
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_plots_that_cannot_be_written_are_one_line_and_the_run_is_kept(
    tmp_path, monkeypatch, capsys
):
    from phs_optax_training import plotting, train_lib

    def finishes(config, workdir, **options):
        train_lib.make_workdir(Path(workdir))
        (Path(workdir) / "metrics.jsonl").write_text("{}\n")
        return {}

    def cannot_write(workdir, *args, **kwargs):
        raise plotting.PlotError("cannot write loss.png (No space left on device)")

    monkeypatch.setattr(train_lib, "train_and_evaluate", finishes)
    monkeypatch.setattr(plotting, "plot_run", cannot_write)
    from phs_optax_training import cli

    workdir = tmp_path / "run"
    cli.FLAGS.unparse_flags()
    try:
        with pytest.raises(SystemExit) as exit_info:
            cli.run(["train.py", f"--workdir={workdir}", *CLI_FLAGS, "--plots"])
    finally:
        cli.FLAGS.unparse_flags()
    code, err = exit_info.value.code, capsys.readouterr().err.strip().splitlines()
    assert code == errors.UNREADABLE
    assert err == [
        f"train.py: error: the run finished and is kept in {workdir}, but its "
        "plots could not be written: cannot write loss.png (No space left on device)"
    ]
    assert (workdir / "metrics.jsonl").exists()


def test_train_py_removes_the_workdir_it_created_when_a_run_fails_early(
    tmp_path, monkeypatch, capsys
):
    from phs_optax_training import train_lib, workdirs

    def fails_before_metrics(config, workdir, **options):
        workdir = Path(workdir)
        train_lib.make_workdir(workdir)
        with workdirs.locked(workdir):
            (workdir / workdirs.CONFIG_FILE).write_text("{}\n")
            (workdir / "checkpoints").mkdir()
            if workdir.name == "wrote_metrics":
                (workdir / "metrics.jsonl").write_text("{}\n")
        raise errors.UnreadableError("no good checkpoint")

    monkeypatch.setattr(train_lib, "train_and_evaluate", fails_before_metrics)
    users = tmp_path / "users_folder"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    (tmp_path / "empty_before").mkdir()
    for workdir, kept in [
        (tmp_path / "new" / "run", None),
        (users / "run", users),
        (tmp_path / "empty_before", tmp_path / "empty_before" / "config.json"),
        (tmp_path / "wrote_metrics", tmp_path / "wrote_metrics" / "metrics.jsonl"),
    ]:
        code, err = run_cli_in_process([f"--workdir={workdir}"], capsys)
        assert code == errors.UNREADABLE
        assert err == ["train.py: error: no good checkpoint"]
        if kept is None:
            assert not (tmp_path / "new").exists()
        else:
            assert kept.exists() and not (users / "run").exists()
    assert (users / "notes.txt").read_text() == "mine"

    held = []

    def fails_while_another_process_holds_the_lock(config, workdir, **options):
        train_lib.make_workdir(Path(workdir))
        held.append(workdirs.WorkdirLock(workdir).acquire())  # "another process"
        raise errors.UnreadableError("no good checkpoint")

    monkeypatch.setattr(
        train_lib, "train_and_evaluate", fails_while_another_process_holds_the_lock
    )
    code, _ = run_cli_in_process([f"--workdir={tmp_path / 'in_use'}"], capsys)
    assert code == errors.UNREADABLE
    assert (tmp_path / "in_use" / workdirs.LOCK_FILE).exists()
    held[0].release()


def test_sweep_and_trace_report_a_missing_data_dir_in_one_line(tmp_path, capsys):
    from phs_optax_training import sweep, trace

    missing = tmp_path / "no_data"
    for processes in ("1", "2"):
        argv = ["--sweep=protocol", "--seeds=0", f"--workdir={tmp_path / 's'}"]
        code = sweep.main([*argv, f"--processes={processes}", f"--data_dir={missing}"])
        assert code == errors.USAGE
        assert capsys.readouterr().err.strip().splitlines() == [
            f"sweep: error: --data_dir={missing} does not exist"
        ]
        assert not (tmp_path / "s").exists()
    argv = ["--preset=table2-lr0.01-goal-f1-m0.1", f"--out={tmp_path / 't'}"]
    assert trace.main([*argv, f"--data_dir={missing}"]) == errors.USAGE
    assert capsys.readouterr().err.strip().splitlines() == [
        f"trace: error: --data_dir={missing} does not exist"
    ]
    assert not (tmp_path / "t").exists()


def test_sweep_names_a_damaged_data_file_with_exit_code_4(tmp_path, capsys):
    from phs_optax_training import sweep

    folder = write_fashion_mnist_dir(tmp_path / "fm", random_idx_splits(4), True)
    _damage_idx(folder, "gzip truncated")
    argv = ["--sweep=protocol", "--seeds=0", f"--workdir={tmp_path / 's'}"]
    assert sweep.main([*argv, "--processes=2", f"--data_dir={folder}"]) == 4
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"sweep: error: {folder / 'train-images-idx3-ubyte.gz'}")


def run_train(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args, *CLI_FLAGS],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.mark.parametrize("case", ["missing data_dir", "truncated file", "bad workdir"])
def test_train_py_fails_in_one_line_and_leaves_no_workdir(
    tmp_path, small_fashion_mnist_dir, case
):
    workdir = tmp_path / "runs" / "w"
    data_dir = small_fashion_mnist_dir
    if case == "missing data_dir":
        data_dir, code = tmp_path / "no_data", errors.USAGE
        expected = f"--data_dir={data_dir} does not exist"
    elif case == "truncated file":
        data_dir = write_fashion_mnist_dir(tmp_path / "fm", random_idx_splits(4), True)
        _damage_idx(data_dir, "gzip truncated")
        code = errors.UNREADABLE
        expected = f"{data_dir / 'train-images-idx3-ubyte.gz'} is truncated: gzip"
    else:
        (tmp_path / "runs").write_text("a file where the workdir's parent goes")
        code = errors.UNREADABLE
        expected = f"cannot create the workdir {workdir}: Not a directory"
    result = run_train([f"--data_dir={data_dir}", f"--workdir={workdir}"])
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"train.py: error: {expected}"), line
    assert not workdir.exists()
    assert (tmp_path / "runs").is_file() == (case == "bad workdir")
