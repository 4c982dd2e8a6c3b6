"""tfcompress (the facade): `import tfcompress` is lean, and every promised name and submodule resolves.

Each check runs in a fresh interpreter, so nothing imported by other tests can make a name resolve.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tfcompress")
HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")
# submodule reachable as `tfc.<name>` -> the module it is
SUBMODULES = {
    "pruning": "tfcompress.pruning",
    "quantization": "tfcompress.quantization",
    "clustering": "tfcompress.clustering",
    "distillation": "tfcompress.distillation",
    "graph": "tfcompress.graph",
    "models": "tfcompress.models",
    "data": "tfcompress.data",
    "analysis": "tfcompress.analysis",
    "regularizers": "tfcompress.pruning.regularizers",
}
# `tfc.<submodule>.<name>...` written in the package's messages and docstrings
REFERENCE = re.compile(r"\btfc\.((?:pruning|quantization|clustering|distillation|graph|regularizers|analysis)"
                       r"(?:\.[A-Za-z_]\w*)+)")

_RESOLVE = r"""
import json, sys, types
import tfcompress as tfc
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
results = {}
for name in list(SUBMODULES) + list(tfc.__all__):
    # an import elsewhere may already have set the attribute; drop it so only the facade can resolve it
    vars(tfc).pop(name, None)
    try:
        value = getattr(tfc, name)
    except Exception as e:
        results[name] = {"error": f"{type(e).__name__}: {e}"}
    else:
        results[name] = {"module": value.__name__ if isinstance(value, types.ModuleType) else None}
print(json.dumps({"heavy": heavy, "all": list(tfc.__all__), "dir": dir(tfc), "results": results}))
"""

_REFERENCES = r"""
import importlib, json, sys
import tfcompress as tfc

def resolve(path):
    value = tfc
    for part in path.split("."):
        value = getattr(value, part)
    return value

failed = {}
for module, paths in REFS.items():
    # a message is read while the module that raises it is loaded; a docstring example needs nothing more
    for path in paths:
        try:
            resolve(path)
        except AttributeError:
            try:
                importlib.import_module(module)
                resolve(path)
            except Exception as e:
                failed[f"tfc.{path} (in {module})"] = f"{type(e).__name__}: {e}"
print(json.dumps(failed))
"""


def _python(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def facade():
    code = f"HEAVY = {HEAVY!r}\nSUBMODULES = {SUBMODULES!r}\n" + _RESOLVE
    return _python(code)


def test_import_does_not_import_tensorflow(facade):
    assert facade["heavy"] == [], f"`import tfcompress` imported {facade['heavy']}"


@pytest.mark.parametrize("name", list(SUBMODULES))
def test_submodule_resolves(facade, name):
    assert name in facade["all"] and name in facade["dir"], f"{name!r} missing from tfcompress.__all__ / dir()"
    result = facade["results"][name]
    assert "error" not in result, f"tfc.{name}: {result.get('error')}"
    assert result["module"] == SUBMODULES[name], f"tfc.{name} is {result['module']}, not {SUBMODULES[name]}"


def test_every_name_in_all_resolves(facade):
    failed = {n: r["error"] for n, r in facade["results"].items() if n in facade["all"] and "error" in r}
    assert not failed, "names in tfcompress.__all__ that do not resolve:\n" + "\n".join(
        f"  tfc.{n}: {e}" for n, e in sorted(failed.items()))
    assert len(facade["all"]) == len(set(facade["all"])), "tfcompress.__all__ lists a name twice"


def test_no_public_name_is_shadowed_by_a_submodule(facade):
    """`import tfcompress.x` sets the attribute `tfc.x` to the module: a public function named like a
    submodule of the package would stop being callable once anything imports that submodule."""
    submodules = {f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py") and f != "__init__.py"}
    submodules |= {d for d in os.listdir(PACKAGE) if os.path.exists(os.path.join(PACKAGE, d, "__init__.py"))}
    shadowed = sorted(n for n in set(facade["all"]) & submodules if n not in SUBMODULES)
    assert not shadowed, f"public names that a submodule import would replace: {shadowed}"


def _references():
    """{module name: sorted `submodule.name...` paths that its source writes as `tfc.<path>`}."""
    refs = {}
    for folder, _, files in os.walk(PACKAGE):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            with open(path, encoding="utf-8") as f:
                found = set(REFERENCE.findall(f.read()))
            if found:
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                refs[module] = sorted(found)
    return refs


def test_reference_pattern_finds_paths():
    found = REFERENCE.findall("see tfc.quantization.register_quantize_config(MyLayer, C()) and tfc.prune(m)")
    assert found == ["quantization.register_quantize_config"]


def test_paths_named_in_messages_exist():
    refs = _references()
    failed = _python(f"REFS = {refs!r}\n" + _REFERENCES)
    assert not failed, "tfc.<submodule>.<name> written in tfcompress/ that does not exist:\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(failed.items()))
