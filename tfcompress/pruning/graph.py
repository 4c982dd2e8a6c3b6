"""The channel dependency graph of a functional tf-keras model: which channels must be removed together.

Every producer (Conv2D, Dense, ...) creates one *atom* per output channel, named `(layer, index)`. A
tensor's last axis is a list of atoms: a pass-through layer (BatchNormalization, ReLU, pooling,
DepthwiseConv2D, ...) hands its input's list on; Concatenate joins its inputs' lists (offset mapping);
Flatten repeats the list once per spatial position (channel c becomes rows s*C + c); an elementwise
merge (Add, Multiply, ...) declares its inputs' atoms equal, position by position, so a residual
shortcut follows the structure of the block's output. Equal atoms form a *class*: the unit that is
kept or removed. Classes that share a producer form a `Group`, the unit a pruning ratio applies to.

A layer the graph does not know (no entry in the layer-kind table, `tfcompress.graph.kinds`, a shared layer, a nested model) blocks
every group that reaches it, with a reason naming it; the model's input channels and its output
channels are fixed. Everything else in the model still prunes.
"""
import dataclasses

import numpy as np

from tfcompress._tf import keras, tf
from tfcompress.graph import kind_of, nodes as _nodes, require_graph, tensor_key as _key
from tfcompress.graph.builtin import couples_channels


def _ranges(positions):
    """[0, 1, 2, 5, 6] -> '0-2, 5-6'."""
    out, start = [], None
    for i, p in enumerate(positions):
        if start is None:
            start = p
        if i + 1 == len(positions) or positions[i + 1] != p + 1:
            out.append(f"{start}-{p}" if p != start else f"{p}")
            start = None
    return ", ".join(out)


@dataclasses.dataclass
class Group:
    """Layers whose channels are coupled: removing channel k means removing it in all of them.

    Attributes:
      index: position in `ChannelGraph.groups`.
      classes: the prunable units (class ids), in channel order of the first producer.
      producers: names of the layers that create the group's channels.
      fixed: class ids that are never removed (model input or output channels).
      blocked_by: reasons that forbid pruning the group at all (unknown layers); empty when prunable.
    """
    index: int
    classes: list
    producers: list
    fixed: set
    blocked_by: list
    graph: object = dataclasses.field(repr=False, default=None)

    @property
    def size(self):
        return len(self.classes)

    @property
    def prunable(self):
        return not self.blocked_by and len(self.fixed) < len(self.classes) and bool(self.producers)

    def members(self):
        """[(layer name, how it takes part, channel positions)] for every layer the group reaches."""
        return self.graph.members(self)

    def details(self):
        """A readable account of the coupled layers, in the spirit of Torch-Pruning's `group.details()`."""
        if not self.producers or len(self.fixed) == self.size:
            state = "fixed (" + (self.graph.fixed_reason(self) or "not produced by any layer") + ")"
        elif self.blocked_by:
            state = "blocked: " + "; ".join(self.blocked_by)
        elif self.fixed:
            state = f"prunable, {len(self.fixed)} fixed ({self.graph.fixed_reason(self)})"
        else:
            state = "prunable"
        lines = [f"Group {self.index}: {self.size} channels, {state}"]
        for name, how, pos in self.members():
            cls = type(self.graph.layers[name]).__name__
            lines.append(f"  {how:<8} {name} ({cls}) channels {_ranges(pos)}")
        return "\n".join(lines)

    def __str__(self):
        return self.details()


class ChannelGraph:
    """Channel dependencies of a functional (or built Sequential) tf-keras model.

    Args:
      model: a built functional tf-keras model.

    Raises:
      UnsupportedModelError: a subclassed model (it has no graph of layers to follow).
    """

    def __init__(self, model):
        self.model = require_graph(model, "channel pruning")
        self.layers = {}
        self.order = []           # layer names, topological
        self.roles = {}           # layer name -> role or None (unknown)
        self.inputs = {}          # layer name -> [tensor keys]
        self.output = {}          # layer name -> tensor key
        self.tensors = {}         # tensor key -> np.array of atom ids
        self.atoms = []           # atom id -> (owner layer name, channel index)
        self._parent = []
        self._fixed = {}          # atom id -> reason (input / output channel)
        self._blocked = {}        # atom id -> reason (unknown layer)
        self._build()
        self._group()

    # ------------------------------------------------------------ union-find over atoms

    def find(self, a):
        p = self._parent
        while p[a] != a:
            p[a] = p[p[a]]
            a = p[a]
        return a

    def _union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)

    def _fresh(self, owner, n):
        start = len(self.atoms)
        self.atoms.extend((owner, i) for i in range(n))
        self._parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    # ------------------------------------------------------------ building

    def _build(self):
        nodes = list(_nodes(self.model))
        calls = {}
        for node in nodes:
            calls[node.layer.name] = calls.get(node.layer.name, 0) + 1
        for node in nodes:
            layer = node.layer
            name = layer.name
            self.layers[name] = layer
            self.order.append(name)
            outs = [_key(t) for t in tf.nest.flatten(node.outputs)]
            ins = [_key(t) for t in node.keras_inputs]
            self.inputs[name] = ins
            if isinstance(layer, keras.layers.InputLayer):
                atoms = self._fresh(name, int(layer.output_shape[0][-1]) if isinstance(layer.output_shape, list)
                                    else int(layer.output_shape[-1]))
                self._fixed.update((int(a), f"input channels of '{name}'") for a in atoms)
                self.tensors[outs[0]] = atoms
                self.output[name] = outs[0]
                self.roles[name] = "input"
                continue
            role, why = self._role(layer, calls[name], outs)
            out_shape = tf.nest.flatten(node.outputs)[0].shape
            atoms = self._flow(role, ins, out_shape) if role else None
            if atoms is None:
                why = why or (f"layer '{name}' ({type(layer).__name__}) maps channels in a way the graph "
                              "cannot follow")
                role = None
                for k in ins:
                    for a in self.tensors[k]:
                        self._blocked.setdefault(int(a), why)
                for k in outs:
                    n = tf.nest.flatten(node.outputs)[outs.index(k)].shape[-1]
                    fresh = self._fresh(name, int(n or 0))
                    self._blocked.update((int(a), why) for a in fresh)
                    self.tensors[k] = fresh
            else:
                self.tensors[outs[0]] = atoms
                if couples_channels(layer):
                    for a in atoms:
                        self._fixed.setdefault(int(a), f"softmax across the channels in '{name}'")
            self.roles[name] = role
            self.output[name] = outs[0]
        for t in tf.nest.flatten(self.model.outputs):
            for a in self.tensors[_key(t)]:
                self._fixed.setdefault(int(a), f"output channels of '{_key(t)[0]}'")

    def _role(self, layer, calls, outs):
        cls = type(layer).__name__
        if isinstance(layer, keras.Model):
            return None, (f"nested model '{layer.name}' ({cls}) is opaque to the channel graph; "
                          "flatten it into the outer functional model to prune across it")
        if calls > 1:
            return None, f"layer '{layer.name}' ({cls}) is shared (called {calls} times)"
        kind = kind_of(layer)
        if kind is None:
            return None, (f"layer '{layer.name}' ({cls}) is unknown to the channel graph; teach it with "
                          "tfc.graph.register_layer")
        if len(outs) != 1:
            return None, f"layer '{layer.name}' ({cls}) has {len(outs)} outputs"
        role = kind.role_of(layer)
        if role is None:
            if isinstance(layer, keras.layers.Lambda):
                return None, (f"Lambda layer '{layer.name}' runs a function the channel graph cannot see "
                              "into; its channels stay as they are")
            return None, f"layer '{layer.name}' ({cls}) is configured in a way channel pruning does not support"
        return role, None

    def _flow(self, role, ins, out_shape):
        """The atoms of a layer's output, or None when its channels cannot be followed."""
        c_out = out_shape[-1]
        srcs = [self.tensors[k] for k in ins]
        if role == "produce":
            return self._fresh(self.order[-1], int(c_out))
        if not srcs:
            return None
        if role in ("pass", "reshape"):
            return srcs[0] if len(srcs[0]) == c_out else None
        if role == "merge":
            full = [s for s in srcs if len(s) == c_out]
            if not full or any(len(s) not in (1, c_out) for s in srcs):
                return None
            for s in full[1:]:
                for a, b in zip(full[0], s):
                    self._union(int(a), int(b))
            return full[0]
        if role == "concat":
            atoms = np.concatenate(srcs)
            return atoms if len(atoms) == c_out else None
        if role == "flatten":
            rep = c_out // max(1, len(srcs[0])) if c_out else 0
            return np.tile(srcs[0], rep) if rep * len(srcs[0]) == c_out and rep > 0 else None
        return None

    # ------------------------------------------------------------ groups

    def _group(self):
        owners = {}
        for a, (owner, _) in enumerate(self.atoms):
            owners.setdefault(self.find(a), []).append(owner)
        parent = {}

        def find(x):
            while parent.setdefault(x, x) != x:
                x = parent[x]
            return x

        for root, names in owners.items():
            for n in names[1:]:
                ra, rb = find(names[0]), find(n)
                if ra != rb:
                    parent[rb] = ra
        comps = {}
        for root in sorted(owners):
            comps.setdefault(find(owners[root][0]), []).append(root)
        self.groups = []
        self.class_atoms = {r: [] for r in owners}
        for a in range(len(self.atoms)):
            self.class_atoms[self.find(a)].append(a)
        for roots in sorted(comps.values(), key=min):
            producers = []
            blocked, fixed = [], set()
            for r in roots:
                for a in self.class_atoms[r]:
                    owner = self.atoms[a][0]
                    if self.roles.get(owner) == "produce" and owner not in producers:
                        producers.append(owner)
                    if a in self._blocked and self._blocked[a] not in blocked:
                        blocked.append(self._blocked[a])
                    if a in self._fixed:
                        fixed.add(r)
            self.groups.append(Group(len(self.groups), roots, producers, fixed, blocked, self))
        self._group_of_class = {r: g for g in self.groups for r in g.classes}

    def group_of_class(self, root):
        return self._group_of_class[root]

    def groups_of_layer(self, name):
        """Groups that the layer's output channels (or, failing that, its inputs) belong to."""
        keys = [self.output[name]] if name in self.output else []
        keys += self.inputs.get(name, [])
        out = []
        for k in keys:
            for a in self.tensors.get(k, ()):
                g = self._group_of_class[self.find(int(a))]
                if g not in out:
                    out.append(g)
            if out:
                break
        return out

    def fixed_reason(self, group):
        reasons = []
        for r in group.fixed:
            for a in self.class_atoms[r]:
                if a in self._fixed and self._fixed[a] not in reasons:
                    reasons.append(self._fixed[a])
        return "; ".join(reasons)

    def roots(self, key):
        """Class id of each position of a tensor's last axis."""
        return np.array([self.find(int(a)) for a in self.tensors[key]], dtype=np.int64)

    def members(self, group):
        classes = set(group.classes)
        out = []
        for name in self.order:
            role = self.roles[name]
            if name in self.output:
                pos = [i for i, r in enumerate(self.roots(self.output[name])) if r in classes]
                if pos and role in ("produce", "input", None):
                    out.append((name, {"produce": "produce", "input": "input"}.get(role, "blocks"), pos))
                    continue
                if pos and role not in ("produce", "input"):
                    out.append((name, role, pos))
                    continue
            for k in self.inputs.get(name, []):
                pos = [i for i, r in enumerate(self.roots(k)) if r in classes]
                if pos:
                    out.append((name, "consume" if role == "produce" else "blocks", pos))
                    break
        return out

    def keep_masks(self, removed):
        """{tensor key: boolean mask of kept positions} for a set of removed class ids."""
        removed = np.array(sorted(removed), dtype=np.int64)
        return {k: ~np.isin(self.roots(k), removed) for k in self.tensors}
