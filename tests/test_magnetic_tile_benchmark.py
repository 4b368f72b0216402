"""The Magnetic Tile benchmark: grouping, split, crop geometry, device batches, U-Net, scoring, and a quick run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.models import IMAGENET_MEAN, IMAGENET_STD, build_vgg_a
from lrpseg.core.pipeline import analyse
from lrpseg.core.student.distil import DistilConfig
from lrpseg.core.train import TrainConfig
from mt_data import DeviceImages, damage_window_box, eval_set, prepare_pair
from mt_eval import relevance_maps, score_maps, segment_all
from mt_split import capture_groups, fingerprint, similarity, split_groups
from mt_train import fit_on_device
from unet import UNet, deform

ROOT = Path(__file__).resolve().parents[1]

SEGMENTERS = ("simple", "gmm", "bmm")
DATA = ROOT.parent / "shared" / "datasets" / "magnetic_tile"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texture(rng, height=300, width=220):
    import cv2

    noise = rng.normal(size=(height, width)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 1.2) * 40 + 128


def _capture(base, rng, top, left, height, width, gain, offset):
    crop = base[top : top + height, left : left + width] * gain + offset
    crop = crop + rng.normal(scale=3.0, size=crop.shape)
    return np.clip(crop, 0, 255).astype(np.uint8)


def test_grouping_joins_relit_shifted_recrops_and_nothing_else():
    rng = np.random.default_rng(0)
    regions = [_texture(rng) for _ in range(4)]
    images, truth = [], []
    for r, base in enumerate(regions):
        for _ in range(3):  # three captures: other crop box, other lighting
            top, left = rng.integers(0, 30, size=2)
            height, width = 240 + rng.integers(0, 30), 170 + rng.integers(0, 30)
            images.append(_capture(base, rng, top, left, height, width, rng.uniform(0.6, 1.4), rng.uniform(-30, 30)))
            truth.append(r)
    assert similarity(fingerprint(images[0]), fingerprint(images[1])) > 0.6
    assert similarity(fingerprint(images[0]), fingerprint(images[3])) < 0.2
    groups = capture_groups(images, ["a"] * len(images), workers=1)
    truth = np.array(truth)
    same_truth = truth[:, None] == truth[None]
    same_group = groups[:, None] == groups[None]
    assert np.array_equal(same_truth, same_group)


def test_grouping_joins_a_chain_of_overlapping_captures_by_its_strong_links():
    rng = np.random.default_rng(3)
    base = _texture(rng, height=420, width=200)
    images = [_capture(base, rng, top, 0, 300, 200, 1.0 + 0.2 * k, 10.0 * k) for k, top in enumerate((0, 48, 96))]
    prints = [fingerprint(im) for im in images]
    assert similarity(prints[0], prints[1]) > 0.8 and similarity(prints[1], prints[2]) > 0.8
    assert similarity(prints[0], prints[2]) < 0.35  # no shift aligns the two ends
    assert len(set(capture_groups(images, ["a"] * 3, merge_threshold=1.01, workers=1))) == 2
    assert len(set(capture_groups(images, ["a"] * 3, workers=1))) == 1


def test_grouping_never_joins_classes():
    rng = np.random.default_rng(1)
    base = _texture(rng)
    images = [_capture(base, rng, 0, 0, 250, 180, 1.0, 0.0) for _ in range(4)]
    groups = capture_groups(images, ["a", "a", "b", "b"], workers=1)
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[0] != groups[2]


def test_split_keeps_groups_whole_and_classes_near_60_20_20():
    rng = np.random.default_rng(2)
    groups, strata = [], []
    for g in range(60):
        size = int(rng.integers(1, 7))
        groups += [g] * size
        strata += ["damaged" if g < 20 else "free"] * size
    groups, strata = np.array(groups), np.array(strata)
    split = split_groups(groups, strata, seed=3)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    for stratum in ("damaged", "free"):
        mine = split[strata == stratum]
        shares = [np.mean(mine == name) for name in ("train", "val", "test")]
        assert abs(shares[0] - 0.6) < 0.08 and abs(shares[1] - 0.2) < 0.06 and abs(shares[2] - 0.2) < 0.06
    assert np.array_equal(split, split_groups(groups, strata, seed=3))
    tiny = split_groups(np.array([0, 0, 1, 2]), np.array(["x"] * 4), seed=0)
    assert set(tiny) == {"train", "val", "test"}


@pytest.mark.parametrize("extent", [(5, 8), (30, 60), (150, 20)])
def test_damage_window_box_puts_the_damage_in_every_window(extent):
    rng = np.random.default_rng(4)
    size = 64
    for _ in range(20):
        height, width = int(rng.integers(size, 260)), int(rng.integers(size, 260))
        mask = np.zeros((height, width), bool)
        dh, dw = min(extent[0], height), min(extent[1], width)
        y, x = int(rng.integers(0, height - dh + 1)), int(rng.integers(0, width - dw + 1))
        mask[y : y + dh, x : x + dw] = True
        top, bottom, left, right = damage_window_box(mask, size)
        assert bottom - top >= size and right - left >= size
        for wy in range(top, bottom - size + 1, 7):
            for wx in range(left, right - size + 1, 7):
                window = mask[wy : wy + size, wx : wx + size]
                if dh <= size and dw <= size:
                    assert window.sum() == mask.sum()  # the whole damage
                else:
                    assert window.any()


def test_eval_set_cuts_the_mask_where_the_image_shows_the_damage():
    image = np.full((150, 400), 60, np.uint8)  # short side below S: upscaled, then cropped around the damage
    mask = np.zeros(image.shape, bool)
    mask[40:60, 300:330] = True
    image[mask] = 220
    img, msk = prepare_pair(image, mask, 224, "paper", damaged=True)
    assert min(img.shape) >= 224 and img.shape == msk.shape
    x, m, source = eval_set([img], [msk], 224, IMAGENET_MEAN, IMAGENET_STD)
    assert x.shape == (3, 3, 224, 224) and m.shape == (3, 224, 224) and list(source) == [0, 0, 0]
    gray = x[:, 0].numpy() * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    for k in range(3):
        assert m[k].sum() > 400
        bright = gray[k] > 0.6
        assert (bright & m[k]).sum() / (bright | m[k]).sum() > 0.9
    assert np.array_equal(m[1], m[0][:, ::-1]) and np.array_equal(m[2], m[0][::-1])


def test_device_crops_move_image_and_mask_together():
    rng = np.random.default_rng(5)
    images = [(rng.random((90, 120)) > 0.5).astype(np.uint8) * 255 for _ in range(3)]
    masks = [im > 127 for im in images]
    data = DeviceImages(images, masks, IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    x, m = data.random_crops([0, 1, 2, 1], 64, rng)
    assert x.shape == (4, 3, 64, 64) and m.shape == (4, 1, 64, 64)
    gray = x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    assert torch.equal(gray > 0.5, m[:, 0] > 0.5)


def test_deform_warps_image_and_mask_alike():
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 20:40, 10:30] = 1
    warped, warped_mask = deform(mask.clone(), mask, torch.Generator().manual_seed(0))
    assert not torch.equal(warped_mask, mask)
    inter = ((warped > 0.5) & (warped_mask > 0.5)).sum()
    union = ((warped > 0.5) | (warped_mask > 0.5)).sum()
    assert inter / union > 0.95
    assert set(warped_mask.unique().tolist()) <= {0.0, 1.0}


def test_unet_keeps_the_input_size():
    model = UNet(base=4).eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 32, 32)


def test_batched_scoring_equals_the_products_per_image_analysis():
    torch.manual_seed(0)
    model = build_vgg_a("128n", width=0.125, input_size=32).eval()
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
    truth = np.zeros((32, 32), bool)
    truth[10:15, 12:20] = True
    x, m, _ = eval_set([image], [truth], 32, model.mean, model.std, flips=False)
    relevance = relevance_maps(model, x, "ours")
    analysis = analyse(model, image, rule_set="ours", segmenter="bmm", mode="crop")
    np.testing.assert_allclose(relevance[0], analysis.relevance, rtol=1e-5, atol=1e-7)
    scores, masks = segment_all(relevance, "bmm", seed=0)
    np.testing.assert_allclose(scores[0], analysis.segmentation.score, atol=1e-6)
    scored = score_maps(scores, masks, m)
    assert 0.0 <= scored["metrics"]["iou"] <= 1.0 and len(scored["curve"][0]) == len(scored["curve"][1])


def test_fit_on_device_trains_and_keeps_the_best_epoch():
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 60, size=(40, 48), dtype=np.uint8) for _ in range(6)]
    images += [rng.integers(180, 256, size=(40, 48), dtype=np.uint8) for _ in range(6)]
    targets = np.array([0] * 6 + [1] * 6)
    val, _, _ = eval_set(images, [np.zeros((40, 48), bool)] * 12, 32, IMAGENET_MEAN, IMAGENET_STD, flips=False)
    config = TrainConfig(head="onefc", width=0.125, input_size=32, epochs=3, batch_size=4, device="cpu",
                         extend_while_poor=False)
    result = fit_on_device(images, targets, val, targets, config)
    summary = result.summary
    assert summary["epochs_run"] == 3 and 1 <= summary["best_epoch"] <= 3
    assert summary["val_balanced_accuracy"] == max(r["balanced_accuracy"] for r in summary["history"])
    assert not result.model.training


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"Magnetic Tile dataset not at {DATA}")
def test_quick_run_writes_the_report(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "magnetic_tile.py"),
            "--quick",
            "--save-models",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = (tmp_path / "magnetic_tile.md").read_text().strip().splitlines()
    pattern = (
        r"RESULT best_lrp_iou=[0-9.]+ best_config=(128n|onefc)/(ours|montavon)/(simple|gmm|bmm) "
        r"unet_iou=[0-9.]+ student_iou=[0-9.]+ balanced_accuracy_128n=[0-9.]+ balanced_accuracy_onefc=[0-9.]+ "
        r"device=cpu"
    )
    assert re.fullmatch(pattern, report[-1]), report[-1]
    assert report[-1] in completed.stdout
    for rule_set in ("ours", "montavon"):
        assert (tmp_path / f"magnetic_tile_pr_{rule_set}.png").stat().st_size > 1000
    assert (tmp_path / "magnetic_tile.json").is_file()
    for head in ("128n", "onefc"):
        assert (tmp_path / f"magnetic_tile_examples_{head}.png").stat().st_size > 1000
        assert f"](magnetic_tile_examples_{head}.png)" in "\n".join(report)
    assert sum(line.startswith("| VGG-A") and "| ours |" in line for line in report) == 6
    model, meta = load_checkpoint(tmp_path / "magnetic_tile_onefc.safetensors")
    assert meta["head"] == "onefc" and model.input_size == 64
    # --load-models scores the saved classifiers again: same test predictions, no training.
    from benchmarks import magnetic_tile

    again = tmp_path / "again"
    args = ["--quick", "--unet-epochs", "0", "--rule-sets", "epsilon_plus", "--load-models", str(tmp_path)]
    assert magnetic_tile.main([*args, "--out", str(again)]) == 0
    first, second = (json.loads((folder / "magnetic_tile.json").read_text()) for folder in (tmp_path, again))
    assert second["classification"] == first["classification"]
    assert not any(stage.startswith("train") for stage in second["timings"])
    assert set(second["segmentation"]) == {f"{h}/epsilon_plus/{m}" for h in ("128n", "onefc") for m in SEGMENTERS}
    with pytest.raises(SystemExit, match="magnetic_tile_128n.safetensors: trained at width 0.125, input 64"):
        magnetic_tile.main([*args, "--input-size", "96", "--out", str(tmp_path / "other")])


def test_example_figure_colours_relevance_by_sign_and_writes_the_iou(tmp_path):
    from benchmarks.mt_eval import _signed_colours, plot_examples

    colours = _signed_colours(np.array([[2.0, -2.0, 0.0, 1.0]]))
    assert colours[0, 0].tolist() == [0, 0, 255]  # strongest positive: red (BGR)
    assert colours[0, 1].tolist() == [255, 0, 0]  # strongest negative: blue
    assert colours[0, 2].tolist() == [255, 255, 255]  # zero: white
    assert colours[0, 3, 2] == 255 and 100 < colours[0, 3, 0] < 150  # half as strong: pale red
    truth = np.zeros((2, 32, 32), bool)
    truth[:, 10:20, 10:20] = True
    crops = np.full((2, 32, 32, 3), 128, np.uint8)
    path = plot_examples(crops, truth, truth.astype(float), list(truth), tmp_path / "ex.png", "title")
    import cv2

    grid = cv2.imread(str(path))
    assert grid.shape == (24 + 2 * 32 + 4, 3 * 32 + 2 * 4, 3)


def test_nt_xent_rewards_views_that_match_their_partner():
    from benchmarks.mt_pretrain import nt_xent

    z = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    matched = nt_xent(z, z, temperature=0.1)
    shuffled = nt_xent(z, z[torch.randperm(8, generator=torch.Generator().manual_seed(1))], temperature=0.1)
    assert matched < 0.5 < shuffled
    # Uninformative (all equal) embeddings: every one of the 2N - 1 candidates is as likely as the partner.
    same = torch.ones(8, 16)
    assert abs(nt_xent(same, same, 0.1).item() - np.log(15)) < 1e-5


def test_contrastive_pretraining_changes_only_the_convolutions_it_hands_over(tmp_path):
    from lrpseg.core.checkpoint import save_checkpoint
    from lrpseg.core.train import prepare_training

    from benchmarks.mt_pretrain import pretrain_encoder, random_view

    rng = np.random.default_rng(0)
    images = [_texture(rng, 80, 70).astype(np.uint8) for _ in range(6)]
    view = random_view(images[0], 32, np.random.default_rng(1))
    assert view.shape == (3, 32, 32) and 0.0 <= float(view.min()) and float(view.max()) <= 1.0
    torch.manual_seed(0)
    fresh = build_vgg_a("128n", width=0.125, input_size=32)  # the initial weights pretrain_encoder starts from
    encoder, summary = pretrain_encoder(images, width=0.125, input_size=32, epochs=2, batch_size=4, seed=0)
    assert summary["epochs"] == 2 and summary["images"] == 6 and np.isfinite(summary["loss_last_epoch"])
    changed = [
        name for name, tensor in encoder.features.state_dict().items()
        if not torch.equal(tensor, fresh.features.state_dict()[name])
    ]  # fmt: skip
    assert len(changed) == len(fresh.features.state_dict())  # every conv weight and bias was trained
    path = tmp_path / "encoder.safetensors"
    save_checkpoint(path, encoder, training=summary)
    config = TrainConfig(head="onefc", width=0.125, input_size=32, init_from=str(path))
    setup = prepare_training(config, np.array([0, 1]))
    assert torch.equal(setup.model.features.conv5_2.weight, encoder.features.conv5_2.weight)


def test_mixed_stand_ins_are_nested_damaged_training_images():
    from mt_mixed import stand_ins

    targets = np.array([1, 0, 1, 1, 0, 1, 1, 0])
    train_idx = np.array([0, 1, 2, 3, 5, 6])
    order = stand_ins(train_idx, targets, [0, 2, 4], seed=0)
    assert sorted(order) == [0, 2, 3, 4, 5]  # positions in the split of its damaged images, each once
    assert all(targets[train_idx[i]] == 1 for i in order)
    assert order == stand_ins(train_idx, targets, [0, 2, 4], seed=0)  # k = 2 is the first two of k = 4


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"Magnetic Tile dataset not at {DATA}")
def test_mixed_quick_run_writes_table_plot_and_result(tmp_path):
    from benchmarks import mt_mixed

    assert mt_mixed.main(["--quick", "--ks", "0", "3", "--unet-epochs", "1", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "mt_mixed.md").read_text().strip().splitlines()
    assert re.fullmatch(r"RESULT iou_k0=[0-9.]+ iou_k3=[0-9.]+ unet_iou=[0-9.]+ device=cpu", report[-1]), report[-1]
    student = f"128n/{DistilConfig.rule_set}/{DistilConfig.segmenter}/r0"  # the product's teacher by default
    assert sum(line.startswith((f"| 0 | {student}", f"| 3 | {student}")) for line in report) == 2
    run = json.loads((tmp_path / "mt_mixed.json").read_text())
    assert [len(row["stand_ins"]) for row in run["rows"]] == [0, 3]
    assert (tmp_path / "mt_mixed_iou.png").stat().st_size > 1000


@pytest.mark.skipif(not DATA.is_dir(), reason=f"Magnetic Tile dataset not at {DATA}")
def test_train_reliability_runs_the_magnetic_tile_half_and_judges_it_by_the_head_bar(tmp_path, capsys):
    import train_reliability

    out = tmp_path / "runs.json"
    args = ["--data", "mt", "--mt-quick", "--seeds", "1", "--heads", "onefc", "--threads", "1", "--json", str(out)]
    assert train_reliability.main(args) == 0
    (row,) = json.loads(out.read_text())
    assert row["data"] == "mt-quick" and row["head"] == "onefc"
    assert 0.0 <= row["iou"] <= 1.0 and 0.5 <= row["median_confidence"] <= 1.0
    assert row["failed"] == (row["balanced_accuracy"] < train_reliability.MT_BEST["onefc"] - 0.05)
    assert capsys.readouterr().out.splitlines()[-1] == f"RESULT runs=1 failed={int(row['failed'])}"


@pytest.mark.skipif(not DATA.is_dir(), reason=f"Magnetic Tile dataset not at {DATA}")
def test_a_fixed_split_seed_scores_runs_of_another_training_seed_on_that_split(tmp_path):
    import train_reliability
    from magnetic_tile import build_parser, finish_args
    from mt_stages import load_split

    out = tmp_path / "runs.json"
    args = ["--data", "mt", "--mt-quick", "--first-seed", "1", "--seeds", "1", "--heads", "onefc", "--threads", "1",
            "--mt-split-seed", "0", "--json", str(out)]  # fmt: skip
    assert train_reliability.main(args) == 0
    (row,) = json.loads(out.read_text())
    assert (row["seed"], row["split_seed"]) == (1, 0)

    def test_split_of(seed):
        mt_args = finish_args(build_parser().parse_args(["--quick", "--seed", str(seed)]))
        return train_reliability.split_fingerprint(load_split(mt_args, {}))

    assert row["test_split"] == test_split_of(0) != test_split_of(1)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"Magnetic Tile dataset not at {DATA}")
def test_a_traced_run_records_each_epochs_test_score_and_the_replay_reproduces_its_result(tmp_path):
    import train_reliability
    from epoch_selection import replay

    out = tmp_path / "runs.json"
    args = ["--data", "mt", "--mt-quick", "--seeds", "1", "--heads", "onefc", "--threads", "1", "--json", str(out),
            "--trace-held-out", "--set", "patience=1000"]  # fmt: skip
    assert train_reliability.main(args) == 0
    (row,) = json.loads(out.read_text())
    traced = row["held_out_balanced_accuracy_per_epoch"]
    assert len(traced) == len(row["val_loss_per_epoch"]) == row["epochs_run"]
    assert traced[row["best_epoch"] - 1] == pytest.approx(row["balanced_accuracy"], abs=1e-4)
    quick = TrainConfig(epochs=row["epochs_run"], min_epochs=0, extend_while_poor=False)
    result = replay(row, quick)
    assert result["kept"][result["product"]] == (row["best_epoch"], traced[row["best_epoch"] - 1])


def test_reliability_renormalises_imagenet_crops_to_the_models_own_statistics():
    import train_reliability
    from lrpseg.core.preprocess import prepare_eval

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    model = build_vgg_a("onefc", width=0.125, input_size=64, mean=(0.3, 0.4, 0.5), std=(0.1, 0.2, 0.3))
    imagenet = prepare_eval(image, 64, IMAGENET_MEAN, IMAGENET_STD)[0][None]
    own = prepare_eval(image, 64, model.mean, model.std)[0][None]
    assert not torch.allclose(imagenet, own, atol=1e-3)
    torch.testing.assert_close(train_reliability.renormalised(imagenet, model), own, atol=1e-5, rtol=1e-5)
