import json

import numpy as np
import pytest
from lrpseg.core.evaluate import read_mask
from lrpseg.core.export import COCO_NAME, PROVENANCE_NAME, REPORT_NAME, Exporter, rle_decode, rle_encode


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (32, 17)])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(0)
    for density in (0.0, 0.1, 0.9, 1.0):
        mask = rng.random(shape) < density
        rle = rle_encode(mask)
        assert sum(rle["counts"]) == mask.size
        np.testing.assert_array_equal(rle_decode(rle), mask)


def test_rle_is_column_major_starting_with_zeros():
    mask = np.array([[1, 0], [1, 1]], dtype=bool)
    assert rle_encode(mask)["counts"] == [0, 2, 1, 1]


def test_exporter_writes_masks_scores_reports(tmp_path):
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    score = np.where(mask, 0.9, 0.1).astype(np.float32)
    exporter = Exporter(tmp_path, provenance={"rule_set": "ours"}, write_coco=True)
    exporter.add(tmp_path / "in" / "a.png", mask, score, probability=0.8, threshold=0.5)
    exporter.add(tmp_path / "in" / "bad.png", error="bad.png: truncated")
    summary = exporter.finish()
    assert summary == {"images": 2, "masks_written": 1, "errors": 1, "kept_existing": 0, "corrected_masks": 0}
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), mask)
    np.testing.assert_allclose(np.load(tmp_path / "scores" / "a.npy"), score, atol=1e-3)
    provenance = json.loads((tmp_path / PROVENANCE_NAME).read_text())
    assert provenance["rule_set"] == "ours" and provenance["lrpseg_version"]
    report = json.loads((tmp_path / REPORT_NAME).read_text())
    assert report["images"][1]["error"] == "bad.png: truncated"
    coco = json.loads((tmp_path / COCO_NAME).read_text())
    np.testing.assert_array_equal(rle_decode(coco["annotations"][0]["segmentation"]), mask)
    assert coco["annotations"][0]["bbox"] == [3, 2, 6, 3]


def test_existing_masks_are_kept_unless_overwrite(tmp_path):
    (tmp_path / "a.png").write_bytes(b"user's precious mask")
    mask = np.ones((4, 4), dtype=bool)
    exporter = Exporter(tmp_path, write_scores=False)
    record = exporter.add(tmp_path / "a.png", mask, probability=0.9)
    exporter.finish()
    assert record.kept_existing == ["a.png"] and record.mask is None
    assert (tmp_path / "a.png").read_bytes() == b"user's precious mask"
    Exporter(tmp_path, overwrite=True, write_scores=False).add(tmp_path / "a.png", mask, probability=0.9)
    assert read_mask(tmp_path / "a.png").all()


def test_same_stem_in_two_folders_gets_two_files(tmp_path):
    exporter = Exporter(tmp_path / "out", write_scores=False)
    first = exporter.add(tmp_path / "damaged" / "x.png", np.ones((3, 3), bool), probability=0.9)
    second = exporter.add(tmp_path / "undamaged" / "x.png", np.zeros((3, 3), bool), probability=0.1)
    assert first.mask != second.mask
    assert read_mask(tmp_path / "out" / first.mask).all()
    assert not read_mask(tmp_path / "out" / second.mask).any()


def test_coco_file_names_are_paths_relative_to_the_image_folder(tmp_path):
    mask = np.ones((3, 3), dtype=bool)
    exporter = Exporter(tmp_path / "out", write_scores=False, write_coco=True, root=tmp_path / "images")
    exporter.add(tmp_path / "images" / "a" / "x.png", mask, probability=0.9)
    exporter.add(tmp_path / "images" / "b" / "x.png", mask, probability=0.9)
    exporter.finish()
    coco = json.loads((tmp_path / "out" / COCO_NAME).read_text())
    assert [image["file_name"] for image in coco["images"]] == ["a/x.png", "b/x.png"]


def test_provenance_lists_the_overrides_of_the_masks_written_by_this_run_only(tmp_path):
    from lrpseg.core.export_run import ExportOptions, MaskExport
    from lrpseg.core.pipeline import Outcome

    class Stub:  # the parts of an Analysis an export reads
        probability, threshold = 0.9, 0.5
        segmentation = type("Seg", (), {"score": np.full((2, 2), 0.7, np.float32)})()

        def mask_at(self, threshold, label=None):
            return self.segmentation.score >= threshold

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept.png").write_bytes(b"existing")
    overrides = {"written.png": 0.6, "kept.png": 0.4, "not-in-this-run.png": 0.3}
    export = MaskExport(tmp_path / "out", {}, ExportOptions(write_scores=False), overrides, root=tmp_path)
    export.export_one(Outcome(tmp_path / "written.png", analysis=Stub()))
    export.export_one(Outcome(tmp_path / "kept.png", analysis=Stub()))
    export.finish()
    provenance = json.loads((tmp_path / "out" / PROVENANCE_NAME).read_text())
    assert provenance["threshold_overrides"] == {"written.png": 0.6}
    assert provenance["threshold"] == "segmenter default"


def test_an_export_removes_the_temporaries_a_killed_export_left(tmp_path):
    out = tmp_path / "out"
    (out / "scores").mkdir(parents=True)
    stale = [out / ".crack.png.k3j2x.tmp", out / "scores" / ".crack.npy.q8w1e.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (out / "crack.png").write_bytes(b"a user's mask")
    Exporter(out)
    assert not any(path.exists() for path in stale)
    assert (out / "crack.png").read_bytes() == b"a user's mask"


class _Analysis:  # the parts of an Analysis an export reads
    probability, threshold = 0.9, 0.5

    def __init__(self, score):
        self.segmentation = type("Seg", (), {"score": score})()

    def mask_at(self, threshold, label=None):
        return self.segmentation.score >= threshold


def test_the_export_keeps_the_image_folders_tree(tmp_path):
    from lrpseg.core.export_run import ExportOptions, MaskExport
    from lrpseg.core.pipeline import Outcome

    root, out = tmp_path / "images", tmp_path / "out"
    scores = {"a": np.full((4, 5), 0.8, np.float32), "b": np.full((4, 5), 0.2, np.float32)}
    export = MaskExport(out, {}, ExportOptions(write_coco=True), root=root)
    records = [export.export_one(Outcome(root / sub / "x.png", analysis=_Analysis(scores[sub]))) for sub in "ab"]
    export.finish()
    assert [(r.mask, r.scores) for r in records] == [("a/x.png", "scores/a/x.npy"), ("b/x.png", "scores/b/x.npy")]
    assert read_mask(out / "a" / "x.png").all() and not read_mask(out / "b" / "x.png").any()
    for sub in "ab":
        np.testing.assert_array_equal(np.load(out / "scores" / sub / "x.npy"), scores[sub])
        assert read_mask(out / "scores" / sub / "x.png").shape == (4, 5)  # the 8-bit preview beside it
    report = json.loads((out / REPORT_NAME).read_text())
    assert [r["mask"] for r in report["images"]] == ["a/x.png", "b/x.png"]
    coco = json.loads((out / COCO_NAME).read_text())
    assert [image["file_name"] for image in coco["images"]] == ["a/x.png", "b/x.png"]
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*.png")) == []  # nothing flattened


def test_images_outside_the_folder_or_under_reserved_folders_get_flat_names(tmp_path):
    root, out = tmp_path / "images", tmp_path / "out"
    mask = np.ones((3, 3), dtype=bool)
    exporter = Exporter(out, write_scores=False, root=root)
    inside = exporter.add(root / "x.png", mask, probability=0.9)
    outside = exporter.add(tmp_path / "elsewhere" / "x.png", mask, probability=0.9)
    scores_sub = exporter.add(root / "scores" / "y.png", mask, probability=0.9)  # would land among score maps
    same_stem = exporter.add(root / "a" / "x.jpg", mask, probability=0.9)
    twin = exporter.add(root / "a" / "x.png", mask, probability=0.9)  # x.jpg and x.png in one folder
    assert inside.mask == "x.png" and same_stem.mask == "a/x.png" and twin.mask == "a/x_2.png"
    assert outside.mask == f"{tmp_path.name}__elsewhere__x.png"  # the existing collision rule
    assert scores_sub.mask == "scores__y.png" and not (out / "scores").exists()


def test_exporting_into_the_image_folder_itself_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"an image")
    with pytest.raises(ValueError, match="is the image folder itself"):
        Exporter(tmp_path / "a" / "..", root=tmp_path)
    assert (tmp_path / "a" / "x.png").read_bytes() == b"an image"


def test_stale_temporaries_are_removed_from_subfolders_too(tmp_path):
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "scores" / "a").mkdir(parents=True)
    stale = [out / "a" / ".x.png.k3j2x.tmp", out / "scores" / "a" / ".x.npy.q8w1e.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (out / "a" / "x.png").write_bytes(b"a user's mask")
    Exporter(out, root=tmp_path / "images")
    assert not any(path.exists() for path in stale)
    assert (out / "a" / "x.png").read_bytes() == b"a user's mask"


def test_a_corrected_mask_of_an_image_in_a_subfolder_is_exported_to_its_place(tmp_path):
    from lrpseg.core.corrected_masks import CorrectedMasks
    from lrpseg.core.export_run import ExportOptions, MaskExport
    from lrpseg.core.pipeline import Outcome
    from lrpseg.core.project import Project

    corrected = np.zeros((4, 5), dtype=bool)
    corrected[1:3, 1:4] = True
    (tmp_path / "images").mkdir()
    with Project.open(tmp_path / "images") as project:
        store = CorrectedMasks(project)
        store.save("a/x.png", corrected, author="ines")
        export = MaskExport(tmp_path / "out", {}, ExportOptions(), root=tmp_path / "images", corrected=store)
        for sub in "ab":
            export.export_one(Outcome(tmp_path / "images" / sub / "x.png", analysis=_Analysis(np.ones((4, 5)))))
        export.finish()
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "a" / "x.png"), corrected)
    assert read_mask(tmp_path / "out" / "b" / "x.png").all()
    provenance = json.loads((tmp_path / "out" / PROVENANCE_NAME).read_text())
    assert list(provenance["corrected_masks"]) == ["a/x.png"]
    report = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    sources = [(r["mask"], r["mask_source"]) for r in report["images"]]
    assert sources == [("a/x.png", "corrected"), ("b/x.png", "automatic")]


def test_the_users_label_decides_which_images_get_a_mask_where_the_classifier_disagrees(tmp_path):
    from lrpseg.core.export_run import ExportOptions, MaskExport
    from lrpseg.core.labels import DAMAGED, UNDAMAGED, gets_mask
    from lrpseg.core.pipeline import Analysis, Outcome
    from lrpseg.core.segment import SegmentationResult

    assert gets_mask(0.1, DAMAGED) and not gets_mask(0.9, UNDAMAGED)
    assert gets_mask(0.9) and not gets_mask(0.1)

    def analysis(probability):
        score = np.zeros((4, 4), np.float32)
        score[1:3, 1:3] = 0.9
        return Analysis(probability, score, SegmentationResult(score, 0.5, score >= 0.5), np.ones((4, 4), bool),
                        "epsilon_plus", "bmm", "max", "crop")

    labels = {"missed.png": DAMAGED, "false_alarm.png": UNDAMAGED}
    export = MaskExport(tmp_path / "out", {}, ExportOptions(write_scores=False), root=tmp_path, labels=labels)
    missed = export.export_one(Outcome(tmp_path / "missed.png", analysis=analysis(0.04)))
    false_alarm = export.export_one(Outcome(tmp_path / "false_alarm.png", analysis=analysis(0.97)))
    unlabelled = export.export_one(Outcome(tmp_path / "unlabelled.png", analysis=analysis(0.04)))
    export.finish()
    assert read_mask(tmp_path / "out" / "missed.png").sum() == 4  # labelled damaged: its mask, whatever p says
    assert not read_mask(tmp_path / "out" / "false_alarm.png").any()
    assert not read_mask(tmp_path / "out" / "unlabelled.png").any()  # the classifier decides
    assert (missed.damaged, missed.label) == (False, DAMAGED)
    assert (false_alarm.damaged, false_alarm.label, unlabelled.label) == (True, UNDAMAGED, None)
