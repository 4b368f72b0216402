"""The paper's LRP rule sets (Table 1) as zennit composites, from fast rules or from zennit's stock rules.

A rule table maps VGG-A layer names to rule names; ``"fc"`` stands for every fully connected layer:

========  ============  ==========================================================================
name      stock rule    parameters (paper §3.3.1; ε read as in Montavon's LRP tutorial)
========  ============  ==========================================================================
zbox      ZBox          bounds: the normalised images of pixel values 0 and 1, per channel
alpha_beta AlphaBeta    α = 2, β = 1
gamma     Gamma         γ = 0.25
epsilon   Epsilon       ε = 0.25 · RMS of the layer output, per sample (Stabilizer(0.25, norm_scale=True))
lrp0      Epsilon       LRP-0: only zennit's 1e-6 denominator stabiliser
zplus     ZPlus         z⁺ (α1β0 on positive and negative inputs alike)
========  ============  ==========================================================================

Besides Table 1, :data:`EPSILON_PLUS` is zennit's EpsilonPlus composite written as such a table, so that it
runs on the fast rules too.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lrpseg.core.lrp.rules import (
    STABILIZER,
    AvgPoolNorm,
    FastAlphaBeta,
    FastAvgPool,
    FastEpsilon,
    FastGamma,
    FastZBox,
    FastZPlus,
)
from lrpseg.core.models import CONV_LAYER_NAMES
from torch import nn
from zennit.composites import NameMapComposite
from zennit.core import Hook, Stabilizer
from zennit.rules import AlphaBeta, Epsilon, Gamma, Pass, ZBox, ZPlus

__all__ = [
    "GAMMA",
    "ALPHA",
    "BETA",
    "EPSILON",
    "MAXPOOL_MODES",
    "RULE_NAMES",
    "TABLE_1",
    "EPSILON_PLUS",
    "check_maxpool",
    "zbox_bounds",
    "layer_rules",
    "table_composite",
    "avgpool_layer_map",
]

GAMMA = 0.25
ALPHA, BETA = 2.0, 1.0
EPSILON = 0.25
MAXPOOL_MODES = ("wta", "avg")
RULE_NAMES = ("zbox", "alpha_beta", "gamma", "epsilon", "lrp0", "zplus")
_DEEP = ("conv4_1", "conv4_2", "conv5_1", "conv5_2")

TABLE_1: Mapping[str, Mapping[str, str]] = {
    "ours": {
        "conv1_1": "zbox",
        "conv2_1": "alpha_beta",
        "conv3_1": "alpha_beta",
        "conv3_2": "gamma",
        **dict.fromkeys(_DEEP, "gamma"),
        "fc": "epsilon",
    },
    "montavon": {
        "conv1_1": "zbox",
        "conv2_1": "gamma",
        "conv3_1": "gamma",
        "conv3_2": "gamma",
        **dict.fromkeys(_DEEP, "epsilon"),
        "fc": "lrp0",
    },
}
# zennit's EpsilonPlus: z⁺ for every conv (the first one too), ε = 1e-6 (that is LRP-0) for every FC layer.
EPSILON_PLUS: Mapping[str, str] = {**dict.fromkeys(CONV_LAYER_NAMES, "zplus"), "fc": "lrp0"}
_NEEDS_NON_NEGATIVE_INPUT = {"alpha_beta", "gamma", "zplus"}
_NEEDS_RELU_AFTER = {"gamma"}


def check_maxpool(maxpool: str) -> None:
    """Raise ValueError unless ``maxpool`` is one of :data:`MAXPOOL_MODES`."""
    if maxpool not in MAXPOOL_MODES:
        raise ValueError(f"maxpool must be one of {MAXPOOL_MODES}, not {maxpool!r}")


def zbox_bounds(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """z^B bounds: the normalised images of pixel values 0 and 1, ``(1, 3, 1, 1)``, model dtype/device."""
    param = next(model.parameters())
    mean = torch.tensor(model.mean, dtype=param.dtype, device=param.device).view(1, -1, 1, 1)
    std = torch.tensor(model.std, dtype=param.dtype, device=param.device).view(1, -1, 1, 1)
    return (0 - mean) / std, (1 - mean) / std


def _layers_in_order(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """VGG-A leaf layers in forward order, with their qualified names."""
    return [
        (f"{part}.{name}", module)
        for part in ("features", "classifier")
        for name, module in getattr(model, part).named_children()
    ]


def layer_rules(model: nn.Module, table: Mapping[str, str]) -> dict[str, str]:
    """Rule name per weighted layer of ``model`` (qualified names such as ``features.conv3_2``).

    Raises
    ------
    ValueError
        ``table`` misses a layer of ``model``, or names an unknown rule.
    """
    rules = {}
    for name, module in _layers_in_order(model):
        if isinstance(module, nn.Conv2d | nn.Linear):
            key = name.split(".", 1)[1] if isinstance(module, nn.Conv2d) else "fc"
            if table.get(key) not in RULE_NAMES:
                raise ValueError(
                    f"rule table gives {table.get(key)!r} for {name}; expected one of {RULE_NAMES}"
                )
            rules[name] = table[key]
    return rules


def _relu_context(model: nn.Module) -> dict[str, tuple[bool, bool]]:
    """Per layer: (its input is provably non-negative, its output goes straight into a ReLU)."""
    layers = _layers_in_order(model)
    context = {}
    non_negative = False  # the image input is signed
    for index, (name, module) in enumerate(layers):
        following = layers[index + 1][1] if index + 1 < len(layers) else None
        context[name] = (non_negative, isinstance(following, nn.ReLU))
        if isinstance(module, nn.ReLU):
            non_negative = True
        elif not isinstance(module, nn.MaxPool2d | nn.Dropout):  # these keep signs
            non_negative = False
    return context


def _stock_rule(rule: str, low, high, stabilizer: float) -> Hook:
    if rule == "zbox":
        return ZBox(low=low, high=high, stabilizer=stabilizer)
    if rule == "alpha_beta":
        return AlphaBeta(alpha=ALPHA, beta=BETA, stabilizer=stabilizer)
    if rule == "gamma":
        return Gamma(gamma=GAMMA, stabilizer=stabilizer)
    if rule == "epsilon":
        return Epsilon(epsilon=Stabilizer(EPSILON, norm_scale=True))
    if rule == "zplus":
        return ZPlus(stabilizer=stabilizer)
    return Epsilon(epsilon=stabilizer)


def _fast_rule(rule: str, low, high, stabilizer: float) -> Hook:
    if rule == "zbox":
        return FastZBox(low, high, stabilizer=stabilizer)
    if rule == "alpha_beta":
        return FastAlphaBeta(ALPHA, BETA, stabilizer=stabilizer)
    if rule == "gamma":
        return FastGamma(GAMMA, stabilizer=stabilizer)
    if rule == "epsilon":
        return FastEpsilon(Stabilizer(EPSILON, norm_scale=True), label="epsilon")
    if rule == "zplus":
        return FastZPlus(stabilizer=stabilizer)
    return FastEpsilon(stabilizer, label="lrp0")


def table_composite(
    model: nn.Module,
    table: Mapping[str, str],
    maxpool: str = "wta",
    fast: bool = True,
    stabilizer: float = STABILIZER,
) -> NameMapComposite:
    """A zennit composite that applies rule ``table`` to the VGG-A ``model``.

    Parameters
    ----------
    model : VGGA
        The model the composite will be registered on (gives layer names and the z^B bounds).
    table : mapping
        Layer name (``conv1_1`` ... ``conv5_2``, ``fc``) to rule name (:data:`RULE_NAMES`), e.g.
        ``TABLE_1["ours"]``.
    maxpool : {"wta", "avg"}
        Max-pool relevance: winner-take-all (the max-pool gradient) or spread like an average pool.
    fast : bool
        Fast rules (:mod:`core.lrp.rules`) where their conditions hold, stock rules elsewhere. False: zennit's
        stock rules throughout, with ``Pass`` for ReLUs (the reference the fast rules are tested against).
    stabilizer : float
        Denominator stabiliser of every rule but ``epsilon`` (zennit's default 1e-6).

    Returns
    -------
    zennit.composites.NameMapComposite
        Use as ``with composite.context(model): ...``.
    """
    check_maxpool(maxpool)
    low, high = zbox_bounds(model)
    context = _relu_context(model)
    name_map = []
    for name, rule in layer_rules(model, table).items():
        non_negative, relu_after = context[name]
        usable = (non_negative or rule not in _NEEDS_NON_NEGATIVE_INPUT) and (
            relu_after or rule not in _NEEDS_RELU_AFTER
        )
        make = _fast_rule if fast and usable else _stock_rule
        name_map.append(((name,), make(rule, low, high, stabilizer)))
    modules = _layers_in_order(model)
    if not fast:
        name_map.append((tuple(name for name, m in modules if isinstance(m, nn.ReLU)), Pass()))
    if maxpool == "avg":
        pools = tuple(name for name, m in modules if isinstance(m, nn.MaxPool2d))
        name_map.append((pools, FastAvgPool(stabilizer) if fast else AvgPoolNorm(stabilizer)))
    return NameMapComposite(name_map=name_map)


def avgpool_layer_map(maxpool: str) -> list:
    """``layer_map`` entry that makes a zennit stock composite spread max-pool relevance as an avg-pool."""
    check_maxpool(maxpool)
    return [(nn.MaxPool2d, AvgPoolNorm())] if maxpool == "avg" else []
