"""The recipe engine has no import cycle: an AST scan of every import in tfcompress/, those inside
functions included, finds no strongly connected component holding a recipe, stage, evaluation, saving,
exporting or command module."""
import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfcompress")
OURS = ("tfcompress.recipes", "tfcompress.recipe", "tfcompress.stages", "tfcompress.evaluation",
        "tfcompress.saving", "tfcompress.exporting", "tfcompress.commands")


def modules(root):
    """{module name: file} of every .py file under `root` (a package folder)."""
    base = os.path.dirname(root)
    found = {}
    for folder, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def import_graph(root):
    """{module: set of modules of the package it imports}, anywhere in its file (functions included);
    `importlib.import_module("literal")` counts too."""
    mods = modules(root)
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.endswith("__init__.py") else m.rpartition(".")[0]
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                  == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
                targets = [node.args[0].value]
            graph[m].update(t for t in targets if t in mods and t != m)
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_scan_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    (pkg / "c.py").write_text("import importlib\nimportlib.import_module('pkg.a')\n")
    graph = import_graph(str(pkg))
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_no_cycle_involves_the_recipe_engine():
    graph = import_graph(ROOT)
    assert "tfcompress.recipe.runner" in graph["tfcompress.recipes"]
    ours = [c for c in cycles(graph) if any(m == p or m.startswith(p + ".") for m in c for p in OURS)]
    assert ours == []


def test_stage_modules_import_only_the_registry_schema_and_state():
    graph = import_graph(ROOT)
    stage_modules = [m for m in graph if m.startswith("tfcompress.stages.")]
    assert {"tfcompress.stages.core", "tfcompress.stages.cluster", "tfcompress.stages.distill",
            "tfcompress.stages.quantize"} <= set(stage_modules)
    for m in stage_modules:
        engine = {t for t in graph[m] if t == "tfcompress.recipes" or t.startswith("tfcompress.recipe.")}
        assert engine <= {"tfcompress.recipe.registry", "tfcompress.recipe.schema", "tfcompress.recipe.state"}, m
    for m in ("tfcompress.recipe.registry", "tfcompress.recipe.schema", "tfcompress.recipe.state"):
        assert not any(t.startswith("tfcompress.stages") or t == "tfcompress.recipe.runner" for t in graph[m]), m
