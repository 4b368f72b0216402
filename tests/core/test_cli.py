from lrpseg.core.cli import main
from lrpseg.core.labels import read_labels
from lrpseg.core.project import Project


def test_demo_prelabels_part_of_the_folder(tmp_path, capsys):
    assert main(["demo", str(tmp_path / "d"), "--damaged", "4", "--undamaged", "4", "--size", "64"]) == 0
    with Project.open(tmp_path / "d" / "images") as project:
        labels = project.labels()
        train_config = project.get_setting("train_config")
    assert len(labels) == 6
    assert all(name.split("/")[0] == label for name, label in labels.items())
    assert train_config["width"] == 0.25


def test_labels_export_then_import_into_a_fresh_project(tmp_path, capsys):
    main(["demo", str(tmp_path / "d"), "--damaged", "3", "--undamaged", "3", "--size", "64", "--prelabel", "1"])
    images = tmp_path / "d" / "images"
    assert main(["labels", "export", str(images), "--file", str(tmp_path / "labels.csv")]) == 0
    exported = read_labels(tmp_path / "labels.csv")
    assert len(exported) == 6
    for store in (images / ".lrpseg").iterdir():
        if store.is_file():
            store.unlink()
    assert main(["labels", "import", str(images), "--file", str(tmp_path / "labels.csv")]) == 0
    with Project.open(images) as project:
        assert project.labels() == exported


def test_folder_without_labels_gives_exit_1_and_one_line(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--labels-from-folders", "--out", str(tmp_path / "m.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no labelled images" in err


def test_train_init_from_a_model_of_another_width_gives_exit_1_and_one_line(tmp_path, capsys):
    from lrpseg.core.checkpoint import save_checkpoint
    from lrpseg.core.models import build_vgg_a

    main(["demo", str(tmp_path / "d"), "--damaged", "3", "--undamaged", "3", "--size", "64"])
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, build_vgg_a("onefc", width=0.5, input_size=64))
    args = ["train", str(tmp_path / "d" / "images"), "--labels-from-folders", "--width", "0.25", "--input-size", "64"]
    code = main([*args, "--init-from", str(other), "--out", str(tmp_path / "m.safetensors"), "--device", "cpu"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 1 and len(errors) == 1 and "other.safetensors" in errors[0] and "width 0.5" in errors[0]
    assert not (tmp_path / "m.safetensors").exists()


def test_train_refuses_a_negative_clip_norm_before_training(tmp_path, capsys):
    main(["demo", str(tmp_path / "d"), "--damaged", "2", "--undamaged", "2", "--size", "64"])
    out = tmp_path / "m.safetensors"
    args = ["train", str(tmp_path / "d" / "images"), "--labels-from-folders", "--clip-grad-norm", "-1"]
    assert main([*args, "--out", str(out), "--device", "cpu"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "clip_grad_norm must be >= 0, not -1.0" in errors[0]
    assert not out.exists()


def test_evaluate_json_prints_null_for_undefined_metrics(tmp_path, capsys):
    import json

    import cv2
    import numpy as np
    from lrpseg.core.export import Exporter

    exporter = Exporter(tmp_path / "out", write_scores=False)
    exporter.add(tmp_path / "images" / "a.png", np.zeros((8, 8), bool), probability=0.9, threshold=0.5)
    exporter.finish()
    (tmp_path / "truth").mkdir()
    truth = np.zeros((8, 8), np.uint8)
    truth[2:4, 2:4] = 255
    cv2.imwrite(str(tmp_path / "truth" / "a.png"), truth)
    assert main(["evaluate", str(tmp_path / "out"), "--truth", str(tmp_path / "truth"), "--json"]) == 0

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    metrics = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert metrics["precision"] is None  # nothing marked: precision is undefined
    assert metrics["recall"] == 0.0


def test_segment_threshold_outside_0_1_gives_exit_1(tmp_path, capsys):
    code = main(["segment", str(tmp_path), "--model", str(tmp_path / "m.safetensors"), "--out",
                 str(tmp_path / "o"), "--threshold", "1.5"])
    assert code == 1 and "threshold" in capsys.readouterr().err


def test_segment_rerun_analyses_only_the_images_whose_files_are_missing(tmp_path, capsys, monkeypatch):
    import json

    import torch
    from lrpseg.core import batched
    from lrpseg.core.checkpoint import save_checkpoint
    from lrpseg.core.export import COCO_NAME, REPORT_NAME
    from lrpseg.core.export_layout import export_masks
    from lrpseg.core.models import build_vgg_a
    from lrpseg.core.segment.sharp import EXPONENTS

    main(["demo", str(tmp_path / "d"), "--damaged", "3", "--undamaged", "3", "--size", "64"])
    images, out = tmp_path / "d" / "images", tmp_path / "out"
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.safetensors", build_vgg_a("128n", width=0.125, input_size=64))
    command = ["segment", str(images), "--model", str(tmp_path / "m.safetensors"), "--out", str(out), "--coco"]
    assert main(command) == 0
    provenance = json.loads((out / "provenance.json").read_text())
    assert (provenance["segmenter"], provenance["relevance_exponent"]) == ("bmm-sharp", EXPONENTS["bmm-sharp"])
    first = {name: path.read_bytes() for name, path in export_masks(out).items()}
    coco = json.loads((out / COCO_NAME).read_text())
    removed = sorted(first)[:2]
    for name in removed:
        export_masks(out)[name].unlink()
    analysed = []
    original = batched.segment_files

    def spy(paths, *args, **kwargs):
        paths = list(paths)
        analysed.extend(paths)
        return original(paths, *args, **kwargs)

    monkeypatch.setattr(batched, "segment_files", spy)
    assert main(command) == 0
    assert "4 images already have every file" in capsys.readouterr().err
    assert sorted(p.relative_to(images).with_suffix("").as_posix() for p in analysed) == removed
    assert {name: path.read_bytes() for name, path in export_masks(out).items()} == first
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["summary"]["masks_written"] == 2  # their score maps were there: kept too
    assert sorted(r["mask"][: -len(".png")] for r in report["images"] if r["analysed"]) == removed
    assert all(r["mask"] is None and r["kept_existing"] for r in report["images"] if not r["analysed"])
    assert json.loads((out / COCO_NAME).read_text()) == coco  # kept masks are read back into the COCO file
