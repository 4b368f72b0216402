"""``lrpseg distil`` and ``lrpseg segment --student`` through the command's entry point."""

from __future__ import annotations

import json

import pytest
import torch
from lrpseg.core.checkpoint import save_checkpoint
from lrpseg.core.cli import main
from lrpseg.core.export import file_sha256
from lrpseg.core.export_layout import export_masks
from lrpseg.core.models import build_vgg_a

TINY = ["--base", "4", "--depth", "2", "--epochs", "1", "--device", "cpu"]


@pytest.fixture
def setup(tmp_path):
    main(["demo", str(tmp_path / "d"), "--damaged", "4", "--undamaged", "4", "--size", "64", "--prelabel", "0"])
    torch.manual_seed(0)
    model = tmp_path / "classifier.safetensors"
    save_checkpoint(model, build_vgg_a("128n", width=0.125, input_size=64))
    return tmp_path, tmp_path / "d" / "images", model


@pytest.mark.usefixtures("one_torch_thread")
def test_distil_then_segment_with_the_student(setup, capsys):
    tmp, images, model = setup
    student = tmp / "student.safetensors"
    assert main(["distil", str(images), "--labels-from-folders", "--model", str(model), "--out", str(student),
                 *TINY]) == 0  # fmt: skip
    assert "distilled from 4 damaged and 4 undamaged images" in capsys.readouterr().out
    out = tmp / "out"
    assert main(["segment", str(images), "--model", str(model), "--student", str(student), "--out", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip
    assert len(export_masks(out)) == 8
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["mask_source"] == "refined (student)"
    assert provenance["student_sha256"] == file_sha256(student)
    assert provenance["student_training"]["counts"]["background"] == 4


@pytest.mark.usefixtures("one_torch_thread")
def test_segment_refuses_a_student_of_another_classifier(setup, capsys):
    tmp, images, model = setup
    student = tmp / "student.safetensors"
    main(["distil", str(images), "--labels-from-folders", "--model", str(model), "--out", str(student), *TINY])
    other = tmp / "other.safetensors"
    torch.manual_seed(1)
    save_checkpoint(other, build_vgg_a("128n", width=0.125, input_size=64))
    capsys.readouterr()
    code = main(["segment", str(images), "--model", str(other), "--student", str(student), "--out", str(tmp / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "trained for another classifier" in err and err.strip().count("\n") == 0
    assert not (tmp / "o").exists() or not export_masks(tmp / "o")


def test_distil_without_damaged_labels_gives_exit_1(setup, capsys):
    tmp, images, model = setup
    (tmp / "labels.csv").write_text("image,label\nundamaged/undamaged_000.png,undamaged\n")
    code = main(["distil", str(images), "--labels", str(tmp / "labels.csv"), "--model", str(model), "--out",
                 str(tmp / "s.safetensors"), *TINY])  # fmt: skip
    assert code == 1 and "damaged" in capsys.readouterr().err
