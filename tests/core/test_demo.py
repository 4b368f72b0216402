"""core.demo: layout, determinism, damage statistics, speed, and that a tiny CNN can learn the labels."""

import time

import numpy as np
import pytest
import torch
from lrpseg.core.demo import make_demo
from lrpseg.core.images import list_images, read_image
from lrpseg.core.labels import DAMAGED, UNDAMAGED, labels_from_folders, read_labels
from torch import nn


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_labels_and_masks(tmp_path):
    out = make_demo(tmp_path / "demo", n_damaged=5, n_undamaged=4, size=96, seed=3)
    assert out == tmp_path / "demo"
    images = [p.relative_to(out / "images").as_posix() for p in list_images(out / "images")]
    assert images == [f"damaged/damaged_{i:03d}.png" for i in range(5)] + [
        f"undamaged/undamaged_{i:03d}.png" for i in range(4)
    ]
    labels = read_labels(out / "labels.csv")
    assert labels == labels_from_folders(out / "images")
    assert sorted(labels) == sorted(images)
    assert [p.name for p in sorted((out / "masks").iterdir())] == sorted(p.split("/")[1] for p in images)
    for rel, label in labels.items():
        image = read_image(out / "images" / rel)
        mask = read_image(out / "masks" / rel.split("/")[1])
        assert image.shape == mask.shape == (96, 96) and image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        coverage = (mask > 0).mean()
        if label == DAMAGED:
            assert 0.005 <= coverage <= 0.05
            ring = _ring(mask > 0)
            assert image[mask > 0].mean() < 0.9 * image[ring].mean()  # darker than its surroundings
            assert image[mask > 0].mean() > 0.3 * image[ring].mean()  # but far from black
        else:
            assert label == UNDAMAGED and coverage == 0


def _ring(mask: np.ndarray) -> np.ndarray:
    import cv2

    grown = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return grown & ~cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def test_deterministic_and_rerun_replaces_old_files(tmp_path):
    make_demo(tmp_path / "a", 3, 3, size=64, seed=7)
    make_demo(tmp_path / "b", 3, 3, size=64, seed=7)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    make_demo(tmp_path / "c", 3, 3, size=64, seed=8)
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    # Fewer images later: the first ones stay identical, the extra ones from the earlier run are gone.
    make_demo(tmp_path / "b", 2, 1, size=64, seed=7)
    files_b = _files(tmp_path / "b")
    assert len(list_images(tmp_path / "b" / "images")) == 3
    assert len(list((tmp_path / "b" / "masks").iterdir())) == 3
    first = "images/damaged/damaged_001.png"
    assert files_b[first] == _files(tmp_path / "a")[first]


def test_fast_enough(tmp_path):
    start = time.perf_counter()
    make_demo(tmp_path, 24, 24, size=128, seed=0)
    assert time.perf_counter() - start < 2.0


def _load(out):
    labels = read_labels(out / "labels.csv")
    x = np.stack([read_image(out / "images" / rel) for rel in labels]).astype(np.float32) / 255
    y = np.array([label == DAMAGED for label in labels.values()], np.int64)
    return torch.from_numpy(x[:, None]), torch.from_numpy(y)


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    pos, neg = scores[y == 1], scores[y == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_damage_is_learnable_but_not_trivial(tmp_path):
    x_train, y_train = _load(make_demo(tmp_path / "train", 24, 24, size=64, seed=0))
    x_test, y_test = _load(make_demo(tmp_path / "test", 32, 32, size=64, seed=1))
    # Not trivial: the global brightness and contrast barely tell the classes apart.
    for stat in (x_test.mean(dim=(1, 2, 3)), x_test.std(dim=(1, 2, 3))):
        assert _auc(stat.numpy(), y_test.numpy()) < 0.9  # measured 0.41 (mean), 0.84 (std)
    x_train, x_test = (x - x.mean(dim=(2, 3), keepdim=True) for x in (x_train, x_test))
    # Learnable: a tiny CNN with global max pooling, trained from image-level labels only, generalises to
    # images of another seed (about 1.5 s on one core).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(1, 8, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 2),
        )
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x_train), y_train).backward()
            optimiser.step()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    assert accuracy >= 0.85, f"test accuracy {accuracy:.2f}"


@pytest.mark.parametrize("size", [32, 320])
def test_other_sizes_keep_damage_in_the_centre(tmp_path, size):
    out = make_demo(tmp_path, 6, 1, size=size, seed=2)
    side = min(size, 224)
    border = (size - side) // 2
    for mask_path in (out / "masks").glob("damaged_*.png"):
        mask = read_image(mask_path) > 0
        assert 0.005 <= mask.mean() <= 0.05
        inner = mask[border : border + side, border : border + side]
        assert inner.sum() == mask.sum()
