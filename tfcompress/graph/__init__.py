"""Model rewriting and the layer-kind table: the one place that changes a tf-keras model's structure.

- `Rewrite` (replace, replace_call, set_config, set_weights, insert_after, insert_before, remove,
  add_output, add_branch), `copy_model`, `map_layers`, `clone_layer` (`rewrite.py`); `submodel`, a stage
  of a model cut at given tensors (`split.py`);
- `walk.py`: reading a model's graph (nodes in order, tensors, readers, inbound layers);
- `kinds.py`: `LayerKind`, `register_layer`, `kind_of`; `builtin.py` fills the table for tf-keras' layers,
  `factor.py` adds how to factor and separate them;
- `keras3.py` / `translate.py`: Keras 3 models in and out (`from_keras3`, `to_keras3`); `held.py`: Lambda
  functions kept in memory through config rebuilds.
"""
from tfcompress.graph import builtin as _builtin  # noqa: F401  (fills the table)
from tfcompress.graph.kinds import KINDS, LayerKind, cut_vectors, kind_of, register_layer
from tfcompress.graph.rewrite import Rewrite, clone_layer, copy_model, map_layers
from tfcompress.graph.split import submodel
from tfcompress.graph.walk import functional, inbound_layers, is_graph_model, nodes, require_graph, tensor_key

__all__ = ["Rewrite", "copy_model", "map_layers", "clone_layer", "LayerKind", "KINDS", "register_layer",
           "kind_of", "cut_vectors", "functional", "require_graph", "is_graph_model", "nodes", "tensor_key",
           "inbound_layers", "submodel"]
