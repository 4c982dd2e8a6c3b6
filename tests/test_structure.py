"""The shape of the source tree: no import cycles, Keras graph internals only in tfcompress/graph/, small modules.

Pure text and AST: nothing here imports tfcompress or TensorFlow.

Import graph. Every `import` and `from ... import` anywhere in a file counts, inside functions too: a
cycle through a function-level import is still two modules that need each other. Edges follow what
Python executes:

- `import a.b.c` runs `a`, `a.b` and `a.b.c`; `from a.b import c` runs `a`, `a.b`, and `a.b.c` when
  that is a module. Relative imports are resolved against the importing module's package.
- A module's own ancestor packages are not edges: they are always imported before the module runs,
  and importing them again only reads `sys.modules`. But `from <ancestor> import name`, where `name` is
  not a submodule, reads a name the ancestor's `__init__` may not have bound yet; when that `__init__`
  binds it with `from M import name`, or loads it lazily in its `__getattr__` from a `{"name": "M"}`
  dict (as `tfcompress/__init__.py` does), the edge goes to M, the module really needed.
- A folder without `__init__.py` (a namespace package) runs no code and is not a node.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "tfcompress"
MAX_LINES = 450
GRAPH_ONLY_TEXT = "inbound_nodes"
GRAPH_PACKAGE = "tfcompress/graph/"


def _modules(root, package):
    """{module name: path} for every .py file under root/package (`pkg/__init__.py` is `pkg`)."""
    found = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        for file in sorted(files):
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                parts = os.path.relpath(path, root)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts.pop()
                found[".".join(parts)] = path
    return found


def _is_package(path):
    return os.path.basename(path) == "__init__.py"


def _ancestors(name):
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _with_parents(name):
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]: what Python runs to import it."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _absolute(module, is_package, node):
    """The absolute name an ImportFrom refers to (its `module`, resolved for relative imports)."""
    if not node.level:
        return node.module
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        base = base[:-(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _rebinds(tree, module, is_package):
    """{name: absolute module} for the names a module binds at top level with `from M import name`, and
    for those its module-level `__getattr__` loads lazily from a top-level `{"name": "module"}` dict."""
    bound, lazy, has_getattr = {}, {}, False
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node)
            for alias in node.names:
                bound[alias.asname or alias.name] = source
        elif isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            has_getattr = True
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            pairs = list(zip(node.value.keys, node.value.values))
            if pairs and all(isinstance(x, ast.Constant) and isinstance(x.value, str) for kv in pairs for x in kv):
                lazy.update((k.value, v.value) for k, v in pairs)
    return {**lazy, **bound} if has_getattr else bound


def import_graph(root, package):
    """{module: {imported module: [line, ...]}} among the modules of `package` under `root`."""
    modules = _modules(root, package)
    trees, rebinds = {}, {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            trees[name] = ast.parse(f.read(), filename=path)
        rebinds[name] = _rebinds(trees[name], name, _is_package(path))
    graph = {}
    for name, tree in trees.items():
        skip = _ancestors(name) | {name}
        edges = {}

        def add(target, line):
            if target in modules and target not in skip:
                edges.setdefault(target, []).append(line)

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    for target in _with_parents(alias.name):
                        add(target, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(name, _is_package(modules[name]), node)
                for target in _with_parents(source):
                    add(target, node.lineno)
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:
                        add(sub, node.lineno)
                    elif alias.name in rebinds.get(source, {}):
                        # a name another module binds (an ancestor's, say): depend on where it comes from
                        for target in _with_parents(rebinds[source][alias.name]):
                            add(target, node.lineno)
        graph[name] = edges
    return graph


def strongly_connected(graph):
    """Tarjan's algorithm: the strongly connected components of `graph`, each a sorted list."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _shortest_cycle(graph, start, members):
    """The shortest loop start -> ... -> start through `members` (breadth first), as a list of names."""
    previous, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return path[::-1] + [start]
                if w in members and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in a strongly connected component but on no loop")


def cycles(graph, modules, root):
    """One report per import cycle: its modules, a shortest loop, and every import line inside it."""
    reports = []
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        loop = _shortest_cycle(graph, component[0], members)
        lines = [f"  cycle of {len(component)}: {' -> '.join(loop)}"]
        for v in component:
            for w in sorted(graph[v]):
                if w in members:
                    where = os.path.relpath(modules[v], root).replace(os.sep, "/")
                    lines.append(f"    {where}:{','.join(map(str, sorted(graph[v][w])))} imports {w}")
        reports.append("\n".join(lines))
    return reports


# ---- the analysis itself, on a small made-up tree ----------------------------------------------------------

def _tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_graph_resolves_imports_like_python(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\nfrom .sub.c import thing\n",
        "pkg/b.py": "def f():\n    import pkg.sub\n    from pkg import a\n",
        "pkg/sub/__init__.py": "from pkg.sub.c import thing\n",
        "pkg/sub/c.py": "from .. import b\nimport pkg\nfrom pkg.sub import thing\nimport os\n",
        "pkg/ns/d.py": "from pkg.ns.e import x\n",
        "pkg/ns/e.py": "",
    })
    graph = {k: sorted(v) for k, v in import_graph(root, "pkg").items()}
    assert graph == {
        "pkg": [],
        "pkg.a": ["pkg.b", "pkg.sub", "pkg.sub.c"],
        "pkg.b": ["pkg.a", "pkg.sub"],            # imports inside a function count
        "pkg.sub": ["pkg.sub.c"],
        "pkg.sub.c": ["pkg.b"],                   # `import pkg` and its own package's name are not edges
        "pkg.ns.d": ["pkg.ns.e"],                 # pkg/ns has no __init__.py: no node for it
        "pkg.ns.e": [],
    }


def test_cycles_found_and_reported(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from pkg.x import X\n",
        "pkg/x.py": "from pkg import y\nX = 1\n",
        "pkg/y.py": "from pkg import X\n",              # X is bound by pkg/__init__ from pkg.x
        "pkg/p.py": "import pkg.q\n",
        "pkg/q.py": "def f():\n    from . import r\n",
        "pkg/r.py": "from .p import nothing\n",
        "pkg/alone.py": "import pkg.x\n",
    })
    graph = import_graph(root, "pkg")
    components = [c for c in strongly_connected(graph) if len(c) > 1]
    assert sorted(components) == [["pkg.p", "pkg.q", "pkg.r"], ["pkg.x", "pkg.y"]]
    reports = cycles(graph, _modules(root, "pkg"), root)
    assert len(reports) == 2
    text = "\n".join(reports)
    assert "cycle of 3: pkg.p -> pkg.q -> pkg.r -> pkg.p" in text
    assert "cycle of 2: pkg.x -> pkg.y -> pkg.x" in text
    assert "pkg/q.py:2 imports pkg.r" in text and "pkg/y.py:1 imports pkg.x" in text
    assert "alone" not in text


def test_lazy_facade_names_lead_to_their_module(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": ('_PUBLIC = {"Callback": "pkg.callbacks"}\n'
                            "def __getattr__(name):\n    import importlib\n"
                            "    return getattr(importlib.import_module(_PUBLIC[name]), name)\n"),
        "pkg/callbacks.py": "from pkg.stages import run\nclass Callback: pass\n",
        "pkg/stages.py": "def run():\n    from pkg import Callback\n",
    })
    graph = import_graph(root, "pkg")
    assert sorted(graph["pkg.stages"]) == ["pkg.callbacks"]
    assert graph["pkg"] == {}                     # the lazy loads run on first use, not on import
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["pkg.callbacks", "pkg.stages"]]


def test_no_cycle_in_a_package_that_imports_its_submodules(tmp_path):
    root = _tree(tmp_path, {
        "pkg/__init__.py": "from pkg.m import F\nfrom pkg import n\n",
        "pkg/m.py": "from pkg.n import G\nimport pkg\nF = G\n",
        "pkg/n.py": "from pkg import errors\nG = 1\n",
        "pkg/errors.py": "",
    })
    graph = import_graph(root, "pkg")
    assert [c for c in strongly_connected(graph) if len(c) > 1] == []
    assert sorted(graph["pkg"]) == ["pkg.m", "pkg.n"]


# ---- the tree --------------------------------------------------------------------------------------------

def test_no_import_cycles():
    modules = _modules(ROOT, PACKAGE)
    reports = cycles(import_graph(ROOT, PACKAGE), modules, ROOT)
    if reports:
        pytest.fail(f"{len(reports)} import cycle(s) among tfcompress modules:\n" + "\n".join(reports), pytrace=False)


def test_keras_graph_internals_only_in_graph_package():
    found = []
    for name, path in sorted(_modules(ROOT, PACKAGE).items()):
        rel = os.path.relpath(path, ROOT).replace(os.sep, "/")
        if rel.startswith(GRAPH_PACKAGE):
            continue
        with open(path, encoding="utf-8") as f:
            found += [f"  {rel}:{i}: {line.strip()}" for i, line in enumerate(f, 1) if GRAPH_ONLY_TEXT in line]
    if found:
        pytest.fail(f"{GRAPH_ONLY_TEXT!r} outside {GRAPH_PACKAGE} (walk the Keras graph through tfcompress.graph "
                    f"instead), {len(found)} line(s):\n" + "\n".join(found), pytrace=False)


def test_no_module_over_max_lines():
    long = []
    for name, path in sorted(_modules(ROOT, PACKAGE).items()):
        with open(path, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            long.append(f"  {os.path.relpath(path, ROOT)}: {n} lines")
    if long:
        pytest.fail(f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(long), pytrace=False)
