"""VGG-A (VGG-11 without batch norm) classifiers of the paper, §3.2.1, and their ImageNet initialisation.

Two heads: ``"128n"`` (FC 128 -> FC 128 -> classes, ReLU and dropout between) and ``"onefc"`` (the last
max-pool output flattened straight into one linear layer). Every layer has a name (``features.conv1_1``,
``classifier.fc1``...) so LRP rule sets can address layers the way the paper's Table 1 does.
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from lrpseg.core.labels import LABELS
from torch import nn

__all__ = [
    "HEADS",
    "CONV_LAYER_NAMES",
    "FC_LAYER_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEFAULT_CLASS_NAMES",
    "VGGA",
    "WeightsUnavailableError",
    "build_vgg_a",
    "imagenet_weights_path",
    "load_imagenet_conv_weights",
]

HEADS = ("128n", "onefc")
CONV_LAYER_NAMES = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2")
FC_LAYER_NAMES = {"128n": ("fc1", "fc2", "fc3"), "onefc": ("fc",)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CLASS_NAMES = LABELS  # index 1 = damaged: the class LRP explains

# VGG-11 ("A"): output channels per conv layer; a max-pool follows the layers in _POOL_AFTER.
_CONV_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
_POOL_AFTER = {
    "conv1_1": "pool1",
    "conv2_1": "pool2",
    "conv3_2": "pool3",
    "conv4_2": "pool4",
    "conv5_2": "pool5",
}
# torchvision's vgg11 `features` indices of the conv layers, in CONV_LAYER_NAMES order.
_TORCHVISION_CONV_INDEX = (0, 3, 6, 8, 11, 13, 16, 18)
_HIDDEN = 128
_DROPOUT = 0.5


class WeightsUnavailableError(RuntimeError):
    """The ImageNet VGG-11 weights are not on this machine (lrpseg never downloads them)."""


def _scaled_channels(width: float) -> tuple[int, ...]:
    return tuple(max(1, round(c * width)) for c in _CONV_CHANNELS)


class VGGA(nn.Module):
    """VGG-A classifier: named VGG-11 conv stack (no batch norm) and a ``"128n"`` or ``"onefc"`` head.

    Build it with :func:`build_vgg_a`. ``forward`` takes normalised ``(N, 3, S, S)`` images and returns
    logits. ReLUs are not in-place, so hooks (LRP) can keep layer outputs.
    """

    def __init__(
        self,
        head: str,
        width: float,
        input_size: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        class_names: Sequence[str],
    ) -> None:
        super().__init__()
        self.head = head
        self.width = float(width)
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.class_names = tuple(str(c) for c in class_names)

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 3
        for name, channels in zip(CONV_LAYER_NAMES, _scaled_channels(width), strict=True):
            layers[name] = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
            layers[name.replace("conv", "relu")] = nn.ReLU()
            if name in _POOL_AFTER:
                layers[_POOL_AFTER[name]] = nn.MaxPool2d(kernel_size=2, stride=2)
            in_channels = channels
        self.features = nn.Sequential(layers)

        flat = in_channels * (self.input_size // 32) ** 2
        if head == "128n":
            self.classifier = nn.Sequential(
                OrderedDict(
                    [
                        ("fc1", nn.Linear(flat, _HIDDEN)),
                        ("relu_fc1", nn.ReLU()),
                        ("dropout1", nn.Dropout(_DROPOUT)),
                        ("fc2", nn.Linear(_HIDDEN, _HIDDEN)),
                        ("relu_fc2", nn.ReLU()),
                        ("dropout2", nn.Dropout(_DROPOUT)),
                        ("fc3", nn.Linear(_HIDDEN, self.num_classes)),
                    ]
                )
            )
        else:
            self.classifier = nn.Sequential(OrderedDict([("fc", nn.Linear(flat, self.num_classes))]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal weights (convs fan-out as torchvision's VGG, linear fan-in), zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of normalised images ``x`` ``(N, 3, S, S)``."""
        return self.classifier(torch.flatten(self.features(x), 1))

    def config(self) -> dict:
        """The arguments of :func:`build_vgg_a` that rebuild this architecture (JSON-serialisable)."""
        return {
            "head": self.head,
            "width": self.width,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": list(self.class_names),
        }

    def extra_repr(self) -> str:
        return f"head={self.head!r}, width={self.width}, input_size={self.input_size}"


def build_vgg_a(
    head: str = "128n",
    width: float = 1.0,
    input_size: int = 224,
    num_classes: int = 2,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    class_names: Sequence[str] | None = None,
) -> VGGA:
    """Build a randomly initialised (Kaiming) VGG-A classifier.

    Parameters
    ----------
    head : {"128n", "onefc"}
        ``"128n"``: FC 128 -> FC 128 -> ``num_classes`` with ReLU and dropout between (``fc1``, ``fc2``,
        ``fc3``). ``"onefc"``: the flattened last max-pool output goes straight into one linear layer
        (``fc``).
    width : float
        Fraction of VGG-11's conv channels (0.125 gives 8, 16, 32, 32, 64, 64, 64, 64); same layers and names.
        For fast tests and CPU users; the paper uses 1.0.
    input_size : int
        Side of the square input, a positive multiple of 32.
    num_classes : int
        Number of output logits.
    mean, std : sequence of 3 floats
        Per-channel normalisation the model expects its inputs to have had (kept for LRP's z^B bounds and
        for preprocessing).
    class_names : sequence of str, optional
        One name per class; default ``("undamaged", "damaged")`` (index 1 = damaged) for two classes.

    Returns
    -------
    VGGA
        The model, in training mode, on the CPU, float32.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    if not (isinstance(width, int | float) and 0 < width <= 1 and math.isfinite(width)):
        raise ValueError(f"width must be in (0, 1], not {width!r}")
    if not isinstance(input_size, int) or input_size < 32 or input_size % 32:
        raise ValueError(f"input_size must be a positive multiple of 32, not {input_size!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, not {num_classes!r}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ValueError(f"mean and std need 3 values each (std > 0), got {mean!r} and {std!r}")
    if class_names is None:
        class_names = (
            DEFAULT_CLASS_NAMES if num_classes == 2 else tuple(f"class{i}" for i in range(num_classes))
        )
    if len(class_names) != num_classes:
        raise ValueError(f"{num_classes} classes need {num_classes} class names, got {list(class_names)}")
    return VGGA(head, width, input_size, num_classes, mean, std, class_names)


def imagenet_weights_path() -> Path:
    """Where torchvision keeps its ImageNet VGG-11 weights (torch hub cache); the file may not exist."""
    from torchvision.models import VGG11_Weights  # deferred: torchvision.models is slow to import

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG11_Weights.IMAGENET1K_V1.url).name


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    # weights_only: refuses pickled code, loads tensors only
    return torch.load(path, map_location="cpu", weights_only=True)


def load_imagenet_conv_weights(model: VGGA, path: str | Path | None = None) -> list[str]:
    """Copy torchvision's ImageNet VGG-11 conv weights into ``model``'s conv layers (the FC layers stay).

    Nothing is downloaded: the file must already be on this machine.

    Parameters
    ----------
    model : VGGA
        A full-width model (``width == 1``).
    path : str or Path, optional
        A torchvision ``vgg11`` state dict (``.pth``, loaded with ``weights_only=True``, or ``.safetensors``).
        Default: torchvision's file in the torch hub cache (:func:`imagenet_weights_path`).

    Returns
    -------
    list of str
        The conv layer names that were initialised.

    Raises
    ------
    WeightsUnavailableError
        The file is missing, unreadable or not a VGG-11 state dict.
    ValueError
        ``model.width`` is not 1 (ImageNet weights exist for the full width only).
    """
    if model.width != 1.0:
        raise ValueError(f"ImageNet weights exist for width 1.0 only; this model has width {model.width}")
    file = Path(path) if path is not None else imagenet_weights_path()
    if not file.is_file():
        raise WeightsUnavailableError(
            f"ImageNet VGG-11 weights not found at {file}. lrpseg never downloads them: copy torchvision's "
            f"vgg11-8a719046.pth there (or name the file), or train from random initialisation."
        )
    try:
        state = _read_state_dict(file)
    except pickle.UnpicklingError:
        # torch's own message here advises weights_only=False, i.e. running the file's code: never that.
        raise WeightsUnavailableError(
            f"{file}: refused: besides tensors the file holds pickled Python objects, which could run code; "
            f"lrpseg reads only plain tensors. Use torchvision's vgg11-8a719046.pth or a .safetensors copy."
        ) from None
    except Exception as error:  # any other reader failure means: not usable weights
        raise WeightsUnavailableError(f"{file}: cannot read VGG-11 weights ({error})") from error
    new_state = {}
    for name, index in zip(CONV_LAYER_NAMES, _TORCHVISION_CONV_INDEX, strict=True):
        conv = model.features.get_submodule(name)
        for param in ("weight", "bias"):
            key = f"features.{index}.{param}"
            tensor = state.get(key) if isinstance(state, dict) else None
            expected = getattr(conv, param).shape
            if not isinstance(tensor, torch.Tensor) or tensor.shape != expected:
                raise WeightsUnavailableError(
                    f"{file}: not a torchvision VGG-11 state dict "
                    f"({key} missing or not of shape {tuple(expected)})"
                )
            new_state[f"{name}.{param}"] = tensor
    with torch.no_grad():
        for key, tensor in new_state.items():
            model.features.get_parameter(key).copy_(tensor)
    return list(CONV_LAYER_NAMES)
