"""Layer-wise Relevance Propagation for VGG-A: the paper's rule sets (Table 1) on zennit, with fast rules.

Public API: :func:`explain`, :class:`Explanation`, :data:`RULE_SETS` (name -> :class:`RuleSet`),
:data:`TABLE_1` (layer -> rule per paper rule set), :data:`MAXPOOL_MODES`.
"""

from lrpseg.core.lrp.composites import MAXPOOL_MODES, TABLE_1, layer_rules, table_composite, zbox_bounds
from lrpseg.core.lrp.explain import (
    DEFAULT_VIEWS,
    STARTS,
    VIEWS,
    Explanation,
    explain,
    relevance_tensor,
    start_relevance,
)
from lrpseg.core.lrp.registry import DEFAULT_RULE_SET, RULE_SETS, RuleSet

__all__ = [
    "DEFAULT_RULE_SET",
    "DEFAULT_VIEWS",
    "Explanation",
    "MAXPOOL_MODES",
    "RULE_SETS",
    "RuleSet",
    "STARTS",
    "TABLE_1",
    "VIEWS",
    "explain",
    "layer_rules",
    "relevance_tensor",
    "start_relevance",
    "table_composite",
    "zbox_bounds",
]
