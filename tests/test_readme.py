"""README's first two commands: what a fresh machine runs, and what CI runs verbatim."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line.split("    #")[0].strip() for line in block.splitlines() if line.strip()]


def _test_extras():
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    extras = next(k.value for k in call.keywords if k.arg == "extras_require")
    return ast.literal_eval(extras)["test"]


def test_second_command_installs_what_the_tests_need_before_running_them():
    install, tests = _readme_commands()[:2]
    assert install.startswith("pip install -e . && tfcompress run ")
    setup_step, _, run_step = tests.partition(" && ")
    assert setup_step == 'pip install -e ".[test]"', tests      # pytest is not in the first command's install
    assert run_step.startswith("python -m pytest ")
    assert any(re.match(r"pytest\b", r) for r in _test_extras())


def test_ci_runs_the_readme_test_command_verbatim():
    tests = _readme_commands()[1]
    lines = [l.strip() for l in open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8")
             if l.strip() and not l.lstrip().startswith("#")]
    assert lines[-1] == tests                     # the last thing CI does, so its exit status is CI's
    assert sum("pytest" in l for l in lines) == 1
