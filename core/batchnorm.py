"""Batch norm while training, folded into the convolutions for the model that is deployed and explained.

A VGG-A without batch norm, started from random (Kaiming) weights, sits on a loss plateau at ln 2 for many
epochs on small inspection sets: on the demo data, early stopping ended 1 of 2 seeds inside it (issue 12). Batch
norm after every convolution removes the plateau. In eval mode a batch-norm layer is a fixed per-channel affine
map, so it folds exactly into the convolution before it:

    W' = W · γ / sqrt(σ² + ε),    b' = (b − μ) · γ / sqrt(σ² + ε) + β

The folded network is a plain VGG-A with the same layers and names, so LRP (and every saved model) sees the
architecture of the paper; the rules explain exactly the function that was validated.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from lrpseg.core.models import VGGA
from torch import nn

__all__ = ["BatchNormTraining"]


class BatchNormTraining(nn.Module):
    """A training view of a :class:`~core.models.VGGA`: its own convolutions, each followed by batch norm.

    The convolution and classifier modules are those of ``model`` (shared, not copied), so an optimiser over
    this module's ``features`` and ``classifier`` trains them; :meth:`folded_state_dict` gives the weights of
    the equivalent plain model.
    """

    def __init__(self, model: VGGA) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        self._conv_names = []
        for name, module in model.features.named_children():
            layers[name] = module
            if isinstance(module, nn.Conv2d):
                layers[f"bn_{name}"] = nn.BatchNorm2d(module.out_channels)
                self._conv_names.append(name)
        self.features = nn.Sequential(layers)
        self.classifier = model.classifier
        self._plain_keys = list(model.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of normalised images; batch statistics in training mode, running statistics in eval mode."""
        return self.classifier(torch.flatten(self.features(x), 1))

    @torch.no_grad()
    def folded_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict of the plain VGG-A whose output equals this network's in eval mode (copies)."""
        state: dict[str, torch.Tensor] = {}
        for name in self._conv_names:
            conv, norm = getattr(self.features, name), getattr(self.features, f"bn_{name}")
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            state[f"features.{name}.weight"] = conv.weight * scale[:, None, None, None]
            state[f"features.{name}.bias"] = (conv.bias - norm.running_mean) * scale + norm.bias
        for key, value in self.classifier.state_dict().items():
            state[f"classifier.{key}"] = value.clone()
        missing = set(self._plain_keys) - set(state)
        if missing:
            raise RuntimeError(f"folding left parameters unset: {sorted(missing)}")
        return {key: state[key] for key in self._plain_keys}
