import numpy as np
import pytest
import torch
from lrpseg.core.cancel import Cancelled, CancelToken
from lrpseg.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lrpseg.core.models import build_vgg_a
from lrpseg.core.train import (
    EarlyStopping,
    TrainConfig,
    conv_learning_rate,
    fit,
    prepare_training,
    stratified_split,
    train_to_checkpoint,
)
from train_samples import TINY, labelled_samples


def test_stratified_split_keeps_proportions_and_is_disjoint():
    targets = np.array([0] * 30 + [1] * 10)
    train, val = stratified_split(targets, 0.2, seed=3)
    assert set(train).isdisjoint(val) and len(train) + len(val) == 40
    assert (targets[val] == 0).sum() == 6 and (targets[val] == 1).sum() == 2


def test_fit_reports_progress_and_summary():
    images, targets = labelled_samples(8)
    seen = []
    result = fit(images[:6], targets[:6], images[6:], targets[6:], TrainConfig(**TINY), progress=seen.append)
    steps = [p for p in seen if not p.message]
    epochs = [p for p in seen if p.message]
    assert len(steps) == 2 * 2 and len(epochs) == 2
    assert all(p.val_balanced_accuracy is not None for p in epochs)
    summary = result.summary
    assert summary["epochs_run"] == 2 and summary["n_train"] == 6 and summary["n_val"] == 2
    assert 1 <= summary["best_epoch"] <= 2 and summary["val_balanced_accuracy"] is not None
    assert not result.model.training


def test_early_stopping_waits_while_the_best_is_still_poor():
    model = torch.nn.Linear(1, 1)
    stopping = EarlyStopping(model, patience=1, min_epochs=0, good_enough=0.9)
    assert not stopping.update(1, {"balanced_accuracy": 0.6, "val_loss": 1.0}, model)
    assert not stopping.update(2, {"balanced_accuracy": 0.5, "val_loss": 1.0}, model)  # stale, but still poor
    assert not stopping.update(3, {"balanced_accuracy": 0.95, "val_loss": 1.0}, model)
    assert stopping.update(4, {"balanced_accuracy": 0.9, "val_loss": 1.0}, model)  # stale and good enough


def replay_stopping(history, **settings):
    """Stop decisions and the kept epoch of EarlyStopping over (balanced accuracy, loss) pairs."""
    model = torch.nn.Linear(1, 1)
    stopping = EarlyStopping(model, **settings)
    stops = [stopping.update(epoch, {"balanced_accuracy": ba, "val_loss": loss}, model)
             for epoch, (ba, loss) in enumerate(history, start=1)]  # fmt: skip
    return stops, stopping.best["epoch"]


@pytest.mark.parametrize(("tolerance", "kept"), [
    (0.0, 2),  # the best balanced accuracy
    (0.05, 3),  # the lowest loss within 0.05 of it: epoch 3 ties with 5 on loss, and came first
    (1.0, 6),  # the lowest loss
])  # fmt: skip
def test_the_keep_tolerance_picks_the_epoch_and_leaves_stopping_to_balanced_accuracy(tolerance, kept):
    history = [(0.9, 0.50), (0.95, 0.40), (0.90, 0.30), (0.90, 0.35), (0.90, 0.30), (0.5, 0.2)]
    stops, epoch = replay_stopping(history, patience=2, tolerance=tolerance)
    assert stops == [False, False, False, True, True, True] and epoch == kept


def test_a_kept_candidate_drops_out_when_the_best_balanced_accuracy_rises_past_its_reach():
    # epoch 2 has the lowest loss within 0.05 of 0.90; epoch 3 lifts the best to 0.97, out of epoch 2's reach,
    # and epoch 1 (0.93, a higher loss than epoch 2 but within reach now) is kept
    history = [(0.93, 0.45), (0.90, 0.30), (0.97, 0.60)]
    assert replay_stopping(history, patience=5, tolerance=0.05)[1] == 1
    assert replay_stopping(history[:2], patience=5, tolerance=0.05)[1] == 2


def test_a_keep_tolerance_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match=r"keep_tolerance must be in \[0, 1\], not 1.5"):
        TrainConfig(keep_tolerance=1.5)


def test_fit_keeps_the_epoch_its_tolerance_picks():
    images, targets = labelled_samples(8)
    for tolerance in (0.0, 1.0):
        config = TrainConfig(**{**TINY, "epochs": 3}, keep_tolerance=tolerance)
        summary = fit(images[:6], targets[:6], images[6:], targets[6:], config).summary
        history = summary["history"]
        if tolerance:
            expected = min(history, key=lambda r: r["val_loss"])["epoch"]
        else:
            expected = max(history, key=lambda r: (r["balanced_accuracy"], -r["val_loss"]))["epoch"]
        assert summary["best_epoch"] == expected
        assert summary["val_balanced_accuracy"] == history[expected - 1]["balanced_accuracy"]


@pytest.mark.parametrize(("settings", "epochs_run"), [
    ({"good_enough": 1.01}, 4),  # never good enough: twice the epochs
    ({"good_enough": 1.01, "extend_while_poor": False}, 2),
    ({"good_enough": 0.0}, 2),  # always good enough: as configured
])  # fmt: skip
def test_a_run_still_poor_after_its_epochs_goes_on_to_twice_as_many(settings, epochs_run):
    images, targets = labelled_samples(8)
    seen = []
    result = fit(images[:6], targets[:6], images[6:], targets[6:], TrainConfig(**TINY, **settings),
                 progress=seen.append)  # fmt: skip
    assert result.summary["epochs_run"] == epochs_run
    ends = [p for p in seen if p.message]
    assert [p.epoch for p in ends] == list(range(1, epochs_run + 1))
    assert ends[-1].epochs == epochs_run  # the progress total follows the extension


def test_fit_is_deterministic_for_a_seed():
    images, targets = labelled_samples(6)
    first = fit(images, targets, [], [], TrainConfig(**TINY)).model.state_dict()
    second = fit(images, targets, [], [], TrainConfig(**TINY)).model.state_dict()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


def test_epoch_callback_sees_each_epochs_model_and_its_additions_stay_in_the_history():
    images, targets = labelled_samples(8)
    plain = fit(images[:6], targets[:6], images[6:], targets[6:], TrainConfig(**TINY))
    seen = []

    def score_held_out(model, record):
        seen.append((record["epoch"], {k: v.clone() for k, v in model.state_dict().items()}))
        record["held_out"] = 10 * record["epoch"]

    traced = fit(images[:6], targets[:6], images[6:], targets[6:], TrainConfig(**TINY), on_epoch=score_held_out)
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert [r["held_out"] for r in traced.summary["history"]] == [10, 20]
    assert not torch.equal(seen[0][1]["features.conv1_1.weight"], seen[1][1]["features.conv1_1.weight"])
    for name, tensor in plain.model.state_dict().items():  # watching does not change the run
        assert torch.equal(tensor, traced.model.state_dict()[name]), name


def _weight_change(config, images, targets):
    start = {k: v.clone() for k, v in prepare_training(config, targets, images).model.state_dict().items()}
    trained = fit(images, targets, [], [], config).model.state_dict()
    return sum(float((trained[k] - start[k]).norm() ** 2) for k in start if k in trained) ** 0.5


def test_gradient_clipping_bounds_every_step():
    images, targets = labelled_samples(8)
    sgd = dict(TINY, optimizer="sgd", lr_fc=0.1, lr_conv=0.1, normalise="imagenet")
    clip = 1e-4
    steps = TINY["epochs"] * 2
    bound = 0.1 * clip * steps / (1 - 0.9)  # learning rate × clipped norm × steps, momentum 0.9 at most ×10
    assert _weight_change(TrainConfig(**sgd, clip_grad_norm=clip), images, targets) <= bound
    assert _weight_change(TrainConfig(**sgd, clip_grad_norm=None), images, targets) > 10 * bound


@pytest.mark.parametrize("setting", [{"clip_grad_norm": -1.0}, {"clip_grad_norm": float("nan")}, {"epochs": 0},
                                     {"lr_fc": 0.0}, {"val_fraction": 1.0}, {"patience": 2.5}])
def test_train_config_refuses_settings_that_cannot_train(setting):
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"training setting {name} must be"):
        TrainConfig(**setting)


def test_fit_needs_both_classes():
    images, _ = labelled_samples(4)
    with pytest.raises(ValueError, match="both classes"):
        fit(images, np.zeros(4, int), [], [], TrainConfig(**TINY))


def test_cancel_keeps_the_previous_model(tmp_path):
    images, targets = labelled_samples(6)
    paths = []
    import cv2

    for i, image in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        cv2.imwrite(str(paths[-1]), image)
    labels = ["damaged" if t else "undamaged" for t in targets]
    model_path = tmp_path / "model.safetensors"
    previous = build_vgg_a("onefc", width=0.125, input_size=32)
    save_checkpoint(model_path, previous)
    before = model_path.read_bytes()
    token = CancelToken()

    def cancel_after_first_step(progress):
        token.cancel()

    with pytest.raises(Cancelled):
        train_to_checkpoint(paths, labels, TrainConfig(**TINY), model_path, cancel_after_first_step, token)
    assert model_path.read_bytes() == before
    load_checkpoint(model_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".png") == ["model.safetensors"]


def test_training_can_start_from_another_models_convolutions(tmp_path):
    source = build_vgg_a("128n", width=0.125, input_size=64)  # another head and input size: only convs move
    path = tmp_path / "other_project.safetensors"
    save_checkpoint(path, source)
    config = TrainConfig(**TINY, init_from=str(path))
    setup = prepare_training(config, np.array([0, 1]))
    for name, tensor in source.features.state_dict().items():
        assert torch.equal(setup.model.features.state_dict()[name], tensor), name
    assert conv_learning_rate(config) == 1e-4  # fine-tuning rate, as with ImageNet weights
    assert fit(*labelled_samples(6), [], [], config).summary["config"]["init_from"] == str(path)
    with pytest.raises(CheckpointError, match="other_project.safetensors.*width 0.125.*width 0.25"):
        prepare_training(TrainConfig(**{**TINY, "width": 0.25}, init_from=str(path)), np.array([0, 1]))
    with pytest.raises(ValueError, match="not both"):
        prepare_training(TrainConfig(**TINY, init_from=str(path), imagenet_weights="auto"), np.array([0, 1]))
