"""VGG-A architecture, names, width option and ImageNet initialisation (never downloads)."""

import pytest
import torch
from lrpseg.core.models import (
    CONV_LAYER_NAMES,
    FC_LAYER_NAMES,
    HEADS,
    WeightsUnavailableError,
    build_vgg_a,
    imagenet_weights_path,
    load_imagenet_conv_weights,
)
from torch import nn

VGG11_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
TORCHVISION_INDEX = (0, 3, 6, 8, 11, 13, 16, 18)


def torchvision_vgg11_features() -> nn.Sequential:
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["A"], batch_norm=False)


def test_full_width_layers_match_vgg11_and_torchvision_indices():
    reference = torchvision_vgg11_features()
    model = build_vgg_a("onefc", input_size=224)
    for name, channels, index in zip(CONV_LAYER_NAMES, VGG11_CHANNELS, TORCHVISION_INDEX, strict=True):
        conv = model.features.get_submodule(name)
        assert conv.out_channels == channels
        assert conv.weight.shape == reference[index].weight.shape
    assert [type(m) for m in model.features] == [type(m) for m in reference]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.classifier.fc.in_features == 512 * 7 * 7


@pytest.mark.parametrize("head", HEADS)
def test_heads_names_and_output_shape(head):
    model = build_vgg_a(head, width=0.125, input_size=64).eval()
    names = dict(model.named_modules())
    for name in CONV_LAYER_NAMES:
        assert isinstance(names[f"features.{name}"], nn.Conv2d)
    for name in FC_LAYER_NAMES[head]:
        assert isinstance(names[f"classifier.{name}"], nn.Linear)
    assert [c.out_channels for c in model.features if isinstance(c, nn.Conv2d)] == [
        8,
        16,
        32,
        32,
        64,
        64,
        64,
        64,
    ]
    assert model(torch.randn(3, 3, 64, 64)).shape == (3, 2)
    assert model.class_names == ("undamaged", "damaged")


def test_128n_head_is_fc128_fc128_2_with_relu_and_dropout():
    model = build_vgg_a("128n", width=0.125, input_size=32)
    kinds = [type(m) for m in model.classifier]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    fc1, fc2, fc3 = (model.classifier.get_submodule(n) for n in FC_LAYER_NAMES["128n"])
    assert (fc1.in_features, fc1.out_features, fc2.out_features, fc3.out_features) == (64, 128, 128, 2)


def test_config_rebuilds_the_same_architecture():
    model = build_vgg_a("128n", width=0.25, input_size=96, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    twin = build_vgg_a(**model.config())
    assert twin.config() == model.config()
    assert {k: v.shape for k, v in twin.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"head": "256n"},
        {"input_size": 100},
        {"input_size": 0},
        {"width": 0},
        {"width": 1.5},
        {"num_classes": 3, "class_names": ("a", "b")},
        {"std": (1.0, 0.0, 1.0)},
    ],
)
def test_invalid_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        build_vgg_a(**kwargs)


def test_missing_imagenet_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert imagenet_weights_path() == tmp_path / "hub" / "checkpoints" / "vgg11-8a719046.pth"
    model = build_vgg_a()
    with pytest.raises(WeightsUnavailableError, match="never downloads"):
        load_imagenet_conv_weights(model)
    with pytest.raises(WeightsUnavailableError, match="not found"):
        load_imagenet_conv_weights(model, tmp_path / "nothing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(WeightsUnavailableError, match="junk.pth"):
        load_imagenet_conv_weights(model, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="width"):
        load_imagenet_conv_weights(build_vgg_a(width=0.5), tmp_path / "nothing.pth")


def test_imagenet_weights_load_from_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = torchvision_vgg11_features()
    path = tmp_path / "vgg11.pth"
    # the conv part of torchvision's vgg11 state dict (its 120M-parameter classifier is not needed here)
    torch.save({f"features.{k}": v for k, v in reference.state_dict().items()}, path)
    model = build_vgg_a("128n")
    fc_before = model.classifier.fc1.weight.clone()
    assert load_imagenet_conv_weights(model, path) == list(CONV_LAYER_NAMES)
    for name, index in zip(CONV_LAYER_NAMES, TORCHVISION_INDEX, strict=True):
        assert torch.equal(model.features.get_submodule(name).weight, reference[index].weight)
        assert torch.equal(model.features.get_submodule(name).bias, reference[index].bias)
    assert torch.equal(model.classifier.fc1.weight, fc_before)
