"""The student segmenter: network, targets, distillation, file format and its refusals, inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lrpseg.core.cancel import Cancelled, CancelToken
from lrpseg.core.checkpoint import CheckpointError, save_checkpoint
from lrpseg.core.demo import make_demo
from lrpseg.core.export import file_sha256
from lrpseg.core.images import read_image
from lrpseg.core.labels import labels_from_folders
from lrpseg.core.models import build_vgg_a
from lrpseg.core.student.distil import (
    DistilConfig,
    coverage_threshold,
    distil,
    distil_to_file,
    epoch_draws,
    teacher_options,
)
from lrpseg.core.student.infer import probability_map, refine, student_analysis
from lrpseg.core.student.store import Student, check_student_fits, load_student, save_student
from lrpseg.core.student.targets import background_target, band_target, crop_batch, make_example
from lrpseg.core.student.unet import UNet, dice_bce_loss

TINY = DistilConfig(base=4, depth=2, stem_stride=2, epochs=1, batch_size=4, device="cpu")


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    return build_vgg_a("128n", width=0.125, input_size=64).eval()


def _student(classifier, base=4, sha="a" * 64) -> Student:
    net = UNet(base=base, depth=2, stem_stride=2).eval()
    identity = {"sha256": sha, "head": classifier.head, "width": classifier.width, "input_size": 64}
    return Student(net, 64, classifier.mean, classifier.std, 0.3, identity, {"seconds": 1.0})


def test_unet_keeps_the_input_size_at_every_stem_stride():
    for stride in (1, 2):
        net = UNet(base=4, depth=2, stem_stride=stride).eval()
        assert net(torch.zeros(1, 3, 32, 48)).shape == (1, 1, 32, 48)
        assert net.granularity == stride * 4


def test_band_target_ignores_scores_near_the_threshold_and_outside_valid():
    score = np.array([[0.0, 0.35, 0.45, 0.55, 0.65, 1.0]], np.float32)
    valid = np.array([[True, True, True, True, True, False]])
    target, weight = band_target(score, 0.5, 0.1, 0.1, valid)
    assert target.tolist() == [[0, 0, 0, 1, 1, 1]]
    assert weight.tolist() == [[1, 1, 0, 0, 1, 0]]
    with pytest.raises(ValueError, match=">= 0"):
        band_target(score, 0.5, -0.1, 0.0)


def test_loss_ignores_pixels_of_weight_zero():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    weight = torch.ones_like(target)
    weight[..., 3, :] = 0
    logits = torch.randn(1, 1, 4, 4)
    changed = logits.clone()
    changed[..., 3, :] += 5.0
    assert torch.isclose(dice_bce_loss(logits, target, weight), dice_bce_loss(changed, target, weight))
    assert not torch.isclose(dice_bce_loss(logits, target), dice_bce_loss(changed, target))


def test_crops_keep_image_target_and_weight_aligned():
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:20, 10:20] = 255
    target = (image[:, :, 0] > 0).astype(np.float32)
    example = make_example(image, target, target.copy(), 64, "pseudo")  # upscaled to 64
    assert example.image.shape == (64, 64, 3)
    x, t, w = crop_batch([example] * 6, 32, (0.5,) * 3, (0.5,) * 3, np.random.default_rng(0))
    assert torch.equal((x[:, :1] > 0).float(), t) and torch.equal(t, w)


def test_coverage_threshold_marks_the_teacher_share():
    rng = np.random.default_rng(0)
    maps = [rng.random((32, 32)).astype(np.float32) for _ in range(3)]
    valids = [np.ones((32, 32), bool)] * 3
    t = coverage_threshold(maps, valids, 0.1)
    share = np.mean(np.concatenate([m.ravel() for m in maps]) >= t)
    assert share == pytest.approx(0.1, abs=0.01)


def test_student_file_round_trip_and_refusals(tmp_path, classifier):
    student = _student(classifier)
    path = tmp_path / "student.safetensors"
    save_student(path, student)
    loaded = load_student(path)
    assert loaded.threshold == pytest.approx(0.3) and loaded.classifier == student.classifier
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.net(x), student.net(x), atol=1e-6)
    check_student_fits(loaded, classifier, "a" * 64)
    with pytest.raises(CheckpointError, match="another classifier"):
        check_student_fits(loaded, classifier, "b" * 64)
    other_size = build_vgg_a("128n", width=0.125, input_size=96)
    with pytest.raises(CheckpointError, match="input size 64; this classifier has input size 96"):
        check_student_fits(loaded, other_size, "a" * 64)
    with pytest.raises(CheckpointError, match="width 0.125; this classifier has width 0.25"):
        check_student_fits(loaded, build_vgg_a("128n", width=0.25, input_size=64), "a" * 64)


def test_student_file_with_weights_of_another_width_is_refused(tmp_path, classifier):
    path = tmp_path / "student.safetensors"
    save_student(path, _student(classifier, base=8))
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as handle:
        meta, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    meta["lrpseg_student"] = meta["lrpseg_student"].replace('"base": 8', '"base": 4')
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="another width or depth"):
        load_student(path)
    checkpoint = tmp_path / "classifier.safetensors"
    save_checkpoint(checkpoint, classifier)
    with pytest.raises(CheckpointError, match="a classifier checkpoint: pass it as --model"):
        load_student(checkpoint)


def test_probability_map_covers_large_images_by_tiles(classifier):
    student = _student(classifier)
    image = np.random.default_rng(0).integers(0, 255, (70, 200, 3), dtype=np.uint8)
    prob, valid, mode = probability_map(student, image)
    assert mode == "tile" and prob.shape == (70, 200) and valid.all()
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    analysis = student_analysis(classifier, student, image)
    assert analysis.segmenter == "student" and analysis.threshold == pytest.approx(0.3)
    assert analysis.segmentation.score.shape == (70, 200)


@pytest.fixture
def demo(tmp_path):
    root = make_demo(tmp_path / "demo", n_damaged=6, n_undamaged=6, size=64, seed=3)
    return root


def _labelled(root):
    labels = labels_from_folders(root / "images")
    paths = sorted(root / "images" / rel for rel in labels)
    return paths, [labels[p.relative_to(root / "images").as_posix()] for p in paths]


def test_the_teacher_fits_uncompressed_relevance_unless_told_otherwise():
    assert teacher_options(DistilConfig()) == {"exponent": 1.0}
    assert teacher_options(DistilConfig(teacher_exponent=None)) == {}  # the segmenter's own exponent
    assert teacher_options(DistilConfig(segmenter="bmm")) == {}  # the paper's segmenters take no exponent


@pytest.mark.usefixtures("one_torch_thread")
def test_distil_reports_progress_and_measures_its_threshold(demo, classifier):
    paths, labels = _labelled(demo)
    images = [read_image(p) for p in paths]
    seen = []
    config = DistilConfig(**{**TINY.__dict__, "self_training_rounds": 1})
    student = distil(images, labels, classifier, config, progress=seen.append)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert {p.stage for p in seen} >= {"explain", "train", "self-train 1"}
    s = student.training
    assert s["counts"]["background"] == 6 and s["counts"]["self"] == 6
    assert len(s["thresholds_per_round"]) == 2 and 0.02 <= student.threshold <= 0.98
    refined = refine(student_analysis(classifier, student, images[0]), student, images[0])
    assert refined.segmentation.score.shape == images[0].shape[:2]


@pytest.mark.usefixtures("one_torch_thread")
def test_exact_masks_replace_the_explanation_with_their_weight(demo, classifier):
    paths, labels = _labelled(demo)
    images = [read_image(p) for p in paths]
    exact = {0: (np.ones(images[0].shape[:2], bool), 2.0)}
    seen = []
    config = DistilConfig(**{**TINY.__dict__, "corrected_repeats": 3})
    student = distil(images, labels, classifier, config, exact=exact, progress=seen.append)
    assert student.training["counts"]["exact"] == 1
    train_steps = [p for p in seen if p.stage == "train"]
    assert train_steps[-1].total == math.ceil((len(images) + 2) / config.batch_size) * config.epochs
    assert seen[-1].fraction == pytest.approx(1.0)


def test_an_epoch_draws_each_exact_example_as_often_as_configured():
    shape = (4, 4)
    examples = [make_example(np.zeros((*shape, 3), np.uint8), *background_target(shape), 4, kind)
                for kind in ("pseudo", "exact", "background", "exact")]  # fmt: skip
    assert epoch_draws(examples, 1).tolist() == [0, 1, 2, 3]
    assert sorted(epoch_draws(examples, 3).tolist()) == [0, 1, 1, 1, 2, 3, 3, 3]


@pytest.mark.usefixtures("one_torch_thread")
def test_cancelled_distillation_writes_nothing(demo, classifier, tmp_path):
    paths, labels = _labelled(demo)
    token = CancelToken()

    def cancel_soon(p):
        if p.stage == "train":
            token.cancel()

    out = tmp_path / "student.safetensors"
    with pytest.raises(Cancelled):
        distil_to_file(paths, labels, classifier, None, TINY, out, progress=cancel_soon, cancel=token)
    assert not out.exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_training_never_reads_ground_truth_masks(demo, classifier, tmp_path, monkeypatch):
    """Wrong masks planted beside the images change nothing, and no mask reader is ever called."""
    paths, labels = _labelled(demo)
    model_path = tmp_path / "classifier.safetensors"
    save_checkpoint(model_path, classifier)
    clean = tmp_path / "clean.safetensors"
    distil_to_file(paths, labels, classifier, model_path, TINY, clean)

    for mask in (demo / "masks").glob("*.png"):  # invert every true mask, and put copies next to each image
        inverted = 255 - read_image(mask)
        import cv2

        cv2.imwrite(str(mask), inverted)
        for folder in ("damaged", "undamaged"):
            cv2.imwrite(str(demo / "images" / folder / f"{mask.stem}_mask.png"), inverted)

    def forbidden(*args, **kwargs):
        raise AssertionError("training read a ground-truth mask")

    monkeypatch.setattr("lrpseg.core.evaluate.read_mask", forbidden)
    planted = tmp_path / "planted.safetensors"
    distil_to_file(paths, labels, classifier, model_path, TINY, planted)
    a, b = load_student(clean), load_student(planted)
    assert a.threshold == b.threshold
    for (key, x), (_, y) in zip(a.net.state_dict().items(), b.net.state_dict().items(), strict=True):
        assert torch.equal(x, y), key
    assert a.classifier["sha256"] == file_sha256(model_path)
