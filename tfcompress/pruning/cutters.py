"""How to cut each layer kind: kept for its old names; the table itself is `tfcompress.graph.kinds`.

`register_layer(MyLayer, role="pass")` here is `tfcompress.graph.register_layer`: one registration
teaches channel pruning, the criteria, compensation, regularizers and cost analysis at once.
"""
from tfcompress.graph import builtin as _builtin  # noqa: F401  (fills the table)
from tfcompress.graph.builtin import couples_channels
from tfcompress.graph.kinds import KINDS as CUTTERS, ROLES, LayerKind as LayerCutter, cut_vectors, kind_of as cutter_for
from tfcompress.graph.kinds import register_layer

__all__ = ["register_layer", "cutter_for", "cut_vectors", "couples_channels", "CUTTERS", "LayerCutter", "ROLES"]
