"""Mixed supervision: hand-corrected masks reach distillation as exact targets, from the CLI on a project folder;
masks that cannot be used are named and skipped, never changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lrpseg.core.checkpoint import save_checkpoint
from lrpseg.core.cli import main
from lrpseg.core.corrected_masks import CorrectedMasks
from lrpseg.core.demo import make_demo
from lrpseg.core.images import read_image
from lrpseg.core.labels import labels_from_folders
from lrpseg.core.models import build_vgg_a
from lrpseg.core.project import Project
from lrpseg.core.student.corrected import corrected_targets, project_at
from lrpseg.core.student.distil import DistilConfig, distil
from lrpseg.core.student.infer import probability_map
from lrpseg.core.student.store import load_student

TINY = ["--base", "4", "--depth", "2", "--epochs", "1", "--device", "cpu"]
DAMAGED_REL, UNDAMAGED_REL = "damaged/damaged_000.png", "undamaged/undamaged_000.png"


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    return build_vgg_a("128n", width=0.125, input_size=64).eval()


@pytest.fixture
def project_folder(tmp_path, classifier):
    """A demo image folder that is an lrpseg project, and the classifier's file."""
    root = make_demo(tmp_path / "demo", n_damaged=4, n_undamaged=4, size=64, seed=3)
    images = root / "images"
    Project.open(images).close()
    model = tmp_path / "classifier.safetensors"
    save_checkpoint(model, classifier)
    return images, model


def _square(shape) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[16:48, 16:48] = True
    return mask


@pytest.mark.usefixtures("one_torch_thread")
def test_a_corrected_mask_that_contradicts_the_teacher_is_learnt_at_its_pixels(classifier, tmp_path):
    """An image labelled undamaged (teacher: all background) with a corrected square of damage: the student
    trained with it marks the square far more than the student trained without it."""
    root = make_demo(tmp_path / "demo", n_damaged=6, n_undamaged=6, size=64, seed=3)
    labels = labels_from_folders(root / "images")
    rels = sorted(labels)
    images = [read_image(root / "images" / rel) for rel in rels]
    i = rels.index(UNDAMAGED_REL)
    square = _square(images[i].shape[:2])
    config = DistilConfig(base=4, depth=2, epochs=30, batch_size=4, lr=1e-2, device="cpu")
    values = [labels[rel] for rel in rels]
    plain = distil(images, values, classifier, config)
    mixed = distil(images, values, classifier, config, exact={i: (square, config.corrected_weight)})
    inside = [probability_map(s, images[i], "auto")[0][square].mean() for s in (plain, mixed)]
    outside = probability_map(mixed, images[i], "auto")[0][~square].mean()
    assert mixed.training["counts"]["exact"] == 1 and mixed.training["counts"]["background"] == 5
    assert inside[1] > inside[0] + 0.2, inside
    assert inside[1] > outside + 0.2, (inside, outside)


@pytest.mark.usefixtures("one_torch_thread")
def test_distil_on_a_project_folder_passes_every_corrected_mask_as_an_exact_target(project_folder, tmp_path,
                                                                                  monkeypatch, capsys):
    images, model = project_folder
    with Project.open(images) as project:
        store = CorrectedMasks(project)
        square = _square((64, 64))
        store.save(DAMAGED_REL, square)
        store.save(UNDAMAGED_REL, ~square)
    seen = {}
    from lrpseg.core import cli_distil

    real = cli_distil.distil_to_file

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_distil, "distil_to_file", spy)
    out = tmp_path / "student.safetensors"
    assert main(["distil", str(images), "--labels-from-folders", "--model", str(model), "--out", str(out),
                 *TINY]) == 0  # fmt: skip
    weight = DistilConfig().corrected_weight
    assert sorted(seen["exact"]) == [images / DAMAGED_REL, images / UNDAMAGED_REL]
    mask, w = seen["exact"][images / DAMAGED_REL]
    assert np.array_equal(mask, square) and w == weight
    assert np.array_equal(seen["exact"][images / UNDAMAGED_REL][0], ~square)
    printed = capsys.readouterr().out
    assert f"and 2 corrected masks (weight {weight:g}, drawn {DistilConfig().corrected_repeats}× per epoch)" in printed
    assert "distilled from 3 damaged and 3 undamaged images" in printed  # the corrected ones are exact
    training = load_student(out).training
    assert training["counts"]["exact"] == 2
    assert training["corrected_masks"] == {"used": 2, "weight": weight, "images": [DAMAGED_REL, UNDAMAGED_REL],
                                           "skipped": []}  # fmt: skip


@pytest.mark.usefixtures("one_torch_thread")
def test_corrected_masks_of_unlabelled_images_count_weight_and_repeats_are_options(project_folder, tmp_path, capsys):
    images, model = project_folder
    with Project.open(images) as project:
        CorrectedMasks(project).save(DAMAGED_REL, _square((64, 64)))
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\ndamaged/damaged_001.png,damaged\nundamaged/undamaged_001.png,undamaged\n")
    out = tmp_path / "student.safetensors"
    assert main(["distil", str(images), "--labels", str(labels), "--model", str(model), "--out", str(out),
                 "--corrected-weight", "7", "--corrected-repeats", "2", *TINY]) == 0  # fmt: skip
    assert "and 1 corrected masks (weight 7, drawn 2× per epoch)" in capsys.readouterr().out
    training = load_student(out).training
    assert training["images"] == 3 and training["corrected_masks"]["weight"] == 7.0
    assert training["config"]["corrected_repeats"] == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_unusable_corrected_masks_are_named_skipped_and_kept(project_folder, tmp_path, capsys):
    images, model = project_folder
    with Project.open(images) as project:
        store = CorrectedMasks(project)
        store.save(DAMAGED_REL, _square((64, 64)))
        store.save("damaged/damaged_001.png", _square((64, 64)))
        store.save("damaged/damaged_002.png", _square((64, 64)))
        damaged_file = store.folder / store.info("damaged/damaged_001.png").file
        resized_file = store.folder / store.info("damaged/damaged_002.png").file
    damaged_file.write_bytes(damaged_file.read_bytes()[:40])  # a torn file: checksum and decoding fail
    import cv2

    cv2.imwrite(str(images / "damaged/damaged_002.png"), np.zeros((80, 72, 3), np.uint8))  # image replaced
    before = {path: path.read_bytes() for path in (damaged_file, resized_file)}
    out = tmp_path / "student.safetensors"
    assert main(["distil", str(images), "--labels-from-folders", "--model", str(model), "--out", str(out),
                 *TINY]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert "and 1 corrected masks (weight" in captured.out and "2 skipped" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert any("damaged/damaged_001.png" in w and str(damaged_file) in w and "damaged" in w for w in warnings)
    assert any("damaged/damaged_002.png" in w and "72×80" in w for w in warnings)
    assert all("kept" in w for w in warnings)
    for path, data in before.items():  # never deleted, never rewritten
        assert path.read_bytes() == data
    with Project.open(images) as project:
        assert CorrectedMasks(project).rels() == {DAMAGED_REL, "damaged/damaged_001.png", "damaged/damaged_002.png"}
    skipped = load_student(out).training["corrected_masks"]["skipped"]
    assert len(skipped) == 2


def test_a_folder_without_a_project_gets_none_and_no_project_is_created(tmp_path):
    root = make_demo(tmp_path / "demo", n_damaged=1, n_undamaged=1, size=64, seed=0)
    assert project_at(root / "images") is None
    assert not (root / "images" / ".lrpseg").exists()


def test_corrected_targets_only_of_the_images_asked_for(project_folder):
    images, _ = project_folder
    with Project.open(images) as project:
        CorrectedMasks(project).save(DAMAGED_REL, _square((64, 64)))
        assert set(corrected_targets(project).masks) == {DAMAGED_REL}
        assert corrected_targets(project, ["undamaged/undamaged_000.png"]).masks == {}


@pytest.mark.usefixtures("one_torch_thread")
def test_labels_from_the_project(project_folder, tmp_path, capsys):
    images, model = project_folder
    with Project.open(images) as project:
        project.set_labels({DAMAGED_REL: "damaged", UNDAMAGED_REL: "undamaged"})
    out = tmp_path / "student.safetensors"
    assert main(["distil", str(images), "--labels-from-project", "--model", str(model), "--out", str(out),
                 *TINY]) == 0  # fmt: skip
    assert "distilled from 1 damaged and 1 undamaged images and 0 corrected masks" in capsys.readouterr().out
    plain = tmp_path / "plain"
    plain.mkdir()
    code = main(["distil", str(plain), "--labels-from-project", "--model", str(model), "--out", str(out), *TINY])
    assert code == 1 and "has no lrpseg project" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "value", "setting"), [("--corrected-repeats", "0", "corrected_repeats"),
                                                         ("--corrected-weight", "-1", "corrected_weight"),
                                                         ("--epochs", "0", "epochs")])  # fmt: skip
def test_distil_refuses_settings_it_cannot_run_with(project_folder, tmp_path, capsys, option, value, setting):
    images, model = project_folder
    out = tmp_path / "student.safetensors"
    code = main(["distil", str(images), "--labels-from-folders", "--model", str(model), "--out", str(out), *TINY,
                 option, value])  # fmt: skip
    assert code != 0 and not out.exists()
    captured = capsys.readouterr()
    assert setting in captured.err and value in captured.err and "distilled" not in captured.out
