"""The learning loop: batch norm folded exactly, the log-odds relevance start, adoption only of better models,
the model history, refusal of chance-level models, label warnings and the time-left estimate (issue 12)."""

import copy

import cv2
import numpy as np
import pytest
import torch
from lrpseg.core.adoption import CHANCE_LEVEL, judge, model_history, near_chance, record_model
from lrpseg.core.batchnorm import BatchNormTraining
from lrpseg.core.calibration import TEMPERATURE_RANGE, apply_temperature, fit_temperature, mean_confidence
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.cli import main
from lrpseg.core.demo import make_sample
from lrpseg.core.lrp import explain
from lrpseg.core.models import build_vgg_a
from lrpseg.core.project import Project
from lrpseg.core.train import TrainConfig, fit, label_warnings, train_classifier
from lrpseg.core.train_defaults import default_train_settings
from train_samples import TINY, labelled_samples

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_folded_batch_norm_gives_the_trained_networks_outputs_exactly():
    torch.manual_seed(0)
    model = build_vgg_a("128n", width=0.125, input_size=64)
    network = BatchNormTraining(copy.deepcopy(model))
    optimizer = torch.optim.Adam(network.parameters(), 1e-2)
    for _ in range(3):  # moves weights and the running statistics away from their start
        loss = network(torch.randn(8, 3, 64, 64) * 2 + 1).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()
    model.load_state_dict(network.folded_state_dict())
    model.eval()
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        expected, actual = network(x), model(x)
    assert torch.allclose(actual, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(actual, build_vgg_a("128n", width=0.125, input_size=64).eval()(x), atol=1e-3)


def test_training_with_batch_norm_delivers_a_plain_vgg():
    images, targets = labelled_samples(8)
    result = fit(images[:6], targets[:6], images[6:], targets[6:], TrainConfig(**TINY, batch_norm=True))
    plain = build_vgg_a("onefc", width=0.125, input_size=32)
    assert result.model.state_dict().keys() == plain.state_dict().keys()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in result.model.modules())
    assert result.summary["config"]["batch_norm"] is True
    assert fit(images[:6], targets[:6], [], [], TrainConfig(**TINY)).summary["config"]["batch_norm"] is False


def _shift_both_logits(model, shift):
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.classifier.fc.bias += shift
    return shifted


def test_log_odds_start_never_flips_the_map_when_both_logits_shift():
    torch.manual_seed(1)
    model = build_vgg_a("onefc", width=0.125, input_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        z_damaged = model(x)[0, 1].item()
    # both logits shift by the same amount: the decision (and the probabilities) stay the same
    shifted = _shift_both_logits(model, -abs(z_damaged) - 5.0)
    assert torch.allclose(torch.softmax(model(x), 1), torch.softmax(shifted(x), 1), atol=1e-6)

    def maps(net, rule_set):
        return explain(net, x, rule_set=rule_set, dtype=torch.float64, start="logodds").relevance.ravel()

    # LRP-0 on the last layer: the map of the decision does not depend on the offset at all
    before, after = maps(model, "montavon"), maps(shifted, "montavon")
    assert np.abs(before - after).max() <= 1e-5 * np.abs(before).max()
    # the epsilon rule's stabiliser weighs the two logits a little differently, but never flips the map
    before, after = maps(model, "ours"), maps(shifted, "ours")
    assert np.corrcoef(before, after)[0, 1] > 0.9
    assert np.sign(before.sum()) == np.sign(after.sum())


def test_log_odds_start_sees_a_decision_carried_by_the_undamaged_logit():
    torch.manual_seed(3)
    model = build_vgg_a("onefc", width=0.125, input_size=64).eval()
    with torch.no_grad():  # the damaged logit is a constant: only the undamaged one decides
        model.classifier.fc.weight[1].zero_()
    x = torch.randn(1, 3, 64, 64)
    raw = explain(model, x, rule_set="ours", dtype=torch.float64, start="logit").relevance
    odds = explain(model, x, rule_set="ours", dtype=torch.float64, start="logodds").relevance
    assert np.abs(raw).max() == 0.0
    assert np.abs(odds).max() > 0.0


def test_log_odds_start_equals_explaining_the_difference_of_the_last_layer():
    torch.manual_seed(2)
    model = build_vgg_a("onefc", width=0.125, input_size=64).eval().double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    difference = copy.deepcopy(model)
    with torch.no_grad():
        weight, bias = model.classifier.fc.weight, model.classifier.fc.bias
        difference.classifier.fc.weight.copy_(torch.stack([torch.zeros_like(weight[0]), weight[1] - weight[0]]))
        difference.classifier.fc.bias.copy_(torch.stack([torch.zeros_like(bias[0]), bias[1] - bias[0]]))
    # LRP-0 on the last layer (montavon) makes the start's rescaling exact
    odds = explain(model, x, rule_set="montavon", dtype=torch.float64, start="logodds").relevance
    direct = explain(difference, x, rule_set="montavon", dtype=torch.float64, start="logit").relevance
    assert np.abs(odds - direct).max() <= 1e-5 * np.abs(direct).max()


def test_judge_adopts_only_better_models_away_from_chance():
    assert judge(0.9, None).adopt
    assert judge(0.9, 0.9).adopt
    refused = judge(0.5, 0.86)
    assert not refused.adopt and "0.50" in refused.reason and "0.86" in refused.reason
    worse = judge(0.8, 0.95)
    assert not worse.adopt and "worse" in worse.reason
    assert not judge(None, None).adopt
    assert near_chance(CHANCE_LEVEL - 0.01) and not near_chance(CHANCE_LEVEL)


def test_model_history_round_trip(tmp_path):
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    summary = {"label_counts": {"damaged": 12, "undamaged": 20}, "val_balanced_accuracy": 0.875,
               "config": {"width": 0.25, "input_size": 224}}
    with Project.open(tmp_path) as project:
        first = record_model(project, tmp_path / ".lrpseg" / "models" / "m1.safetensors", summary, adopted=True)
        record_model(project, tmp_path.parent / "elsewhere.safetensors", {**summary, "val_balanced_accuracy": 0.5},
                     adopted=False)
    with Project.open(tmp_path) as project:
        history = model_history(project)
    outside = str(tmp_path.parent / "elsewhere.safetensors")
    assert [r.path for r in history] == [".lrpseg/models/m1.safetensors", outside]
    assert history[0] == first and history[0].damaged_labels == 12 and history[0].settings["width"] == 0.25
    assert [r.adopted for r in history] == [True, False]
    assert "0.88" in history[0].describe() and "12 damaged" in history[0].describe()


def test_train_summary_scores_the_current_model_on_the_same_validationlabelled_samples(tmp_path):
    images, targets = labelled_samples(10)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    labels = ["damaged" if t else "undamaged" for t in targets]
    current = build_vgg_a("onefc", width=0.125, input_size=64).eval()  # another input size is fine
    result = train_classifier(paths, labels, TrainConfig(**TINY), current=current)
    assert result.summary["label_counts"] == {"damaged": 5, "undamaged": 5}
    assert 0.0 <= result.summary["current_val_balanced_accuracy"] <= 1.0


def test_cli_refuses_a_chance_level_model(tmp_path, capsys):
    image = make_sample(np.random.default_rng(0), 40, True)[0]
    for folder in ("damaged", "undamaged"):
        (tmp_path / "images" / folder).mkdir(parents=True)
        for i in range(5):  # the same picture in both classes: no model can tell them apart
            cv2.imwrite(str(tmp_path / "images" / folder / f"{folder}{i}.png"), image)
    out = tmp_path / "model.safetensors"
    args = ["train", str(tmp_path / "images"), "--labels-from-folders", "--out", str(out), "--width", "0.125",
            "--input-size", "32", "--epochs", "2", "--batch-size", "4", "--val-fraction", "0.4"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "chance level" in err[-1] and "--accept-any" in err[-1] and not out.exists()
    assert any("only 5 images are labelled damaged" in line for line in err)
    assert main([*args, "--accept-any"]) == 0 and out.exists()
    assert main([*args, "--accept-any", "--keep-tolerance", "0"]) == 0
    assert load_checkpoint(out)[1]["training"]["config"]["keep_tolerance"] == 0


def test_label_warnings_name_a_small_class():
    assert label_warnings(["damaged"] * 10 + ["undamaged"] * 12) == []
    (warning,) = label_warnings(["damaged"] * 3 + ["undamaged"] * 12)
    assert "only 3 images are labelled damaged" in warning


def test_progress_estimates_the_time_left():
    images, targets = labelled_samples(8)
    seen = []
    fit(images[:6], targets[:6], images[6:], targets[6:], TrainConfig(**TINY), progress=seen.append)
    assert all(p.seconds_left is not None and p.seconds_left >= 0 for p in seen)
    assert seen[-1].seconds_left == 0
    assert seen[0].seconds_left > seen[-2].seconds_left


def test_temperature_softens_an_over_confident_model_and_keeps_its_decisions():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 200)
    margin = np.where(rng.random(200) < 0.8, 1.0, -1.0) * 8.0  # 80 % right, all at ~99.97 % confidence
    logits = np.stack([np.zeros(200), np.where(targets == 1, margin, -margin)], axis=1)
    temperature = fit_temperature(logits, targets)
    assert temperature > 2.0
    model = build_vgg_a("onefc", width=0.125, input_size=32).eval()
    x = torch.randn(4, 3, 32, 32)
    before = model(x).detach()
    apply_temperature(model, temperature)
    after = model(x).detach()
    assert torch.allclose(after, before / temperature, atol=1e-6)
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0, int)) == 1.0


def test_new_folders_get_settings_that_fit_the_machine_and_thelabelled_samples():
    assert default_train_settings([(224, 224)] * 3, "cpu") == {"width": 0.25, "input_size": 224}
    assert default_train_settings([(100, 140), (110, 300)], "cpu")["input_size"] == 96
    assert default_train_settings([(2048, 2048)], "cpu")["input_size"] == 224
    assert default_train_settings([], "cuda") == {"width": 1.0, "input_size": 224}


def test_inputs_are_normalised_by_the_training_images_own_statistics():
    images, targets = labelled_samples(6)
    model = fit(images, targets, [], [], TrainConfig(**TINY)).model
    pixels = np.concatenate([img.reshape(-1).astype(np.float64) / 255 for img in images])
    assert np.allclose(model.mean, [pixels.mean()] * 3, atol=1e-6)
    assert np.allclose(model.std, [pixels.std()] * 3, atol=1e-6)
    pretrained_like = fit(images, targets, [], [], TrainConfig(**TINY, normalise="imagenet")).model
    assert pretrained_like.mean == (0.485, 0.456, 0.406)


def test_a_model_without_validation_mistakes_is_sharpened_only_up_to_what_n_of_n_right_supports():
    targets = np.array([0, 1] * 10)
    confident = np.stack([np.zeros(20), np.where(targets == 1, 8.0, -8.0)], axis=1)
    assert fit_temperature(confident, targets) == 1.0  # already above 21/22: left as it is
    unsure = np.stack([np.zeros(20), np.where(targets == 1, 1.0, -1.0)], axis=1)  # right, at 73 %
    temperature = fit_temperature(unsure, targets)
    assert temperature < 1.0
    assert mean_confidence(unsure, temperature) == pytest.approx(21 / 22, abs=1e-5)
    unsure[0, 1] = 1.0  # one mistake: now the cross-entropy decides
    assert fit_temperature(unsure, targets) != pytest.approx(temperature, abs=1e-3)
    assert fit_temperature(np.zeros((4, 2)), np.array([0, 0, 0, 0])) == TEMPERATURE_RANGE[0]  # ties stay 50 %


def test_cli_train_with_one_class_or_an_empty_folder_says_why(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "model.safetensors"
    assert main(["train", str(tmp_path / "empty"), "--labels-from-folders", "--out", str(out)]) == 1
    assert "no labelled images" in capsys.readouterr().err
    (tmp_path / "one" / "damaged").mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(tmp_path / "one" / "damaged" / f"d{i}.png"), make_sample(np.random.default_rng(i), 40, True)[0])
    args = ["train", str(tmp_path / "one"), "--labels-from-folders", "--out", str(out), "--width", "0.125",
            "--input-size", "32", "--epochs", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "both classes" in err[-1] and "0 undamaged" in err[-1] and not out.exists()
