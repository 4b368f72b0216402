"""The registry of LRP rule sets: the one list the CLI and the GUI read their choices from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

from lrpseg.core.lrp.composites import EPSILON_PLUS, TABLE_1, avgpool_layer_map, table_composite, zbox_bounds
from torch import nn
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from zennit.core import Composite

__all__ = ["RuleSet", "RULE_SETS", "DEFAULT_RULE_SET"]

#: Chosen by measurement (benchmarks/RESULTS.md, issue 12): on the demo and on Magnetic Tile its masks beat the
#: paper's "ours" with every mixture segmenter, at the same cost. The paper's rule sets stay selectable.
DEFAULT_RULE_SET = "epsilon_plus"


@dataclass(frozen=True)
class RuleSet:
    """A named way to explain: ``rule_set(model, maxpool)`` returns a fresh zennit composite for ``model``.

    Attributes
    ----------
    name : str
        Registry key.
    description : str
        One line for menus and ``--help``.
    build : callable
        ``(model, maxpool) -> zennit.core.Composite``.
    table : mapping or None
        Layer-name-to-rule table (Table 1, or :data:`~core.lrp.composites.EPSILON_PLUS`) of the rule sets built
        from one; None for zennit's stock composites.
    """

    name: str
    description: str
    build: Callable[[nn.Module, str], Composite]
    table: Mapping[str, str] | None = None

    def __call__(self, model: nn.Module, maxpool: str = "wta") -> Composite:
        """Composite for ``model`` with max-pool relevance ``maxpool`` ("wta" or "avg")."""
        return self.build(model, maxpool)


def _table(table: Mapping[str, str], fast: bool) -> Callable[[nn.Module, str], Composite]:
    return lambda model, maxpool: table_composite(model, table, maxpool=maxpool, fast=fast)


def _stock(composite: type, boxed: bool = False) -> Callable[[nn.Module, str], Composite]:
    def build(model: nn.Module, maxpool: str) -> Composite:
        extra = partial(composite, layer_map=avgpool_layer_map(maxpool))
        if boxed:
            low, high = zbox_bounds(model)
            return extra(low=low, high=high)
        return extra()

    return build


_ENTRIES = (
    RuleSet(
        "ours", "Table 1 'LRP Ours': z^B, α2β1, γ, ε FC (fast)", _table(TABLE_1["ours"], True), TABLE_1["ours"]
    ),
    RuleSet(
        "montavon",
        "Table 1 'LRP Montavon': z^B, γ, ε, LRP-0 FC (fast)",
        _table(TABLE_1["montavon"], True),
        TABLE_1["montavon"],
    ),
    RuleSet(
        "zennit_ours",
        "'ours' from zennit stock rules (reference)",
        _table(TABLE_1["ours"], False),
        TABLE_1["ours"],
    ),
    RuleSet(
        "zennit_montavon",
        "'montavon' from zennit stock rules (reference)",
        _table(TABLE_1["montavon"], False),
        TABLE_1["montavon"],
    ),
    RuleSet(
        "epsilon_gamma_box", "zennit EpsilonGammaBox: z^B first, γ convs, ε FC", _stock(EpsilonGammaBox, True)
    ),
    RuleSet(
        "epsilon_plus",
        "zennit EpsilonPlus: z+ convs, LRP-0 FC (fast)",
        _table(EPSILON_PLUS, True),
        EPSILON_PLUS,
    ),
    RuleSet("zennit_epsilon_plus", "zennit's stock EpsilonPlus composite (reference)", _stock(EpsilonPlus)),
    RuleSet(
        "epsilon_plus_flat", "zennit EpsilonPlusFlat: flat first, z+ convs, ε FC", _stock(EpsilonPlusFlat)
    ),
    RuleSet(
        "epsilon_alpha2_beta1", "zennit EpsilonAlpha2Beta1: α2β1 convs, ε FC", _stock(EpsilonAlpha2Beta1)
    ),
    RuleSet(
        "epsilon_alpha2_beta1_flat",
        "zennit EpsilonAlpha2Beta1Flat: flat first, α2β1 convs, ε FC",
        _stock(EpsilonAlpha2Beta1Flat),
    ),
)

RULE_SETS: Mapping[str, RuleSet] = MappingProxyType({entry.name: entry for entry in _ENTRIES})
