"""Every rlgen module imports on its own without a warning, and no two rlgen modules import each other.

Modules are found by walking the package directory, so the tests follow the code as it is restructured.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import deque
from itertools import pairwise
from pathlib import Path

import pytest

import rlgen

PACKAGE_DIR = Path(rlgen.__file__).parent


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package (a directory without an
    __init__.py is a namespace package, importable all the same); a package's __init__.py is the
    module named after the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _absolute_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module a (possibly relative) `from ... import` names: `from . import x` inside
    rlgen/a/b.py is `from rlgen.a import x`; inside rlgen/a/__init__.py too."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The rlgen modules that `module` imports -> the first line doing so. Every import statement
    counts, at module level, inside functions and under `if TYPE_CHECKING:` alike.

    `import a.b.c` imports the module a.b.c; `from a.b import n` imports a.b (whose namespace is
    searched for n) and a.b.n when n is a submodule. A package's own __init__ is a module like any
    other: a child importing names from its package, or a package importing its child, is an edge."""
    found: dict[str, int] = {}
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_base(node, module, is_package)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in modules and target != module:
                found.setdefault(target, node.lineno)
    return found


def import_graph(package_dir: Path) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    modules = package_modules(package_dir)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}, modules


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1 (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph[successor]))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a component, by breadth-first search inside it."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node]):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if successor in members and successor not in parent:
                parent[successor] = node
                queue.append(successor)
    raise AssertionError(f"{component} is not strongly connected")


def describe_cycles(package_dir: Path) -> list[str]:
    """One line per import cycle: its modules, and one cycle with the file:line of each import."""
    graph, modules = import_graph(package_dir)
    lines = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(graph, component)
        steps = [f"{a} ({modules[a].relative_to(package_dir.parent)}:{graph[a][b]})" for a, b in pairwise(cycle)]
        lines.append(f"{' <-> '.join(component)}: {' -> '.join(steps)} -> {cycle[-1]}")
    return lines


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "pkg"


def test_the_cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "def f():\n    from . import a\n    return a\n",
        "pkg/sub/__init__.py": "from pkg.sub.leaf import g\n",
        "pkg/sub/leaf.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import sub\n",
        "pkg/c.py": "import pkg.sub.leaf\nfrom pkg import a\n",
        "pkg/notes/d.py": "import pkg.c\n",  # a namespace package: pkg.notes.d is importable
    })
    graph, modules = import_graph(package)
    assert set(modules) == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.notes.d", "pkg.sub", "pkg.sub.leaf"}
    assert graph["pkg.notes.d"] == {"pkg.c": 1}
    assert graph["pkg.c"] == {"pkg.sub.leaf": 1, "pkg": 2, "pkg.a": 2}
    assert strongly_connected(graph) == [["pkg.a", "pkg.b"], ["pkg.sub", "pkg.sub.leaf"]]
    assert describe_cycles(package) == [
        "pkg.a <-> pkg.b: pkg.a (pkg/a.py:1) -> pkg.b (pkg/b.py:2) -> pkg.a",
        "pkg.sub <-> pkg.sub.leaf: pkg.sub (pkg/sub/__init__.py:1) -> pkg.sub.leaf (pkg/sub/leaf.py:3) -> pkg.sub",
    ]


def test_the_cycle_finder_passes_a_tree_and_a_diamond(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/base.py": "import os\n",
        "pkg/left.py": "from .base import *\n",
        "pkg/right.py": "def f():\n    import pkg.base\n",
        "pkg/top.py": "from pkg import left, right\nfrom pkg.base import x\n",
    })
    graph, _ = import_graph(package)
    assert graph["pkg.top"] == {"pkg": 1, "pkg.left": 1, "pkg.right": 1, "pkg.base": 2}
    assert strongly_connected(graph) == [] and describe_cycles(package) == []


def test_no_import_cycle_between_rlgen_modules():
    cycles = describe_cycles(PACKAGE_DIR)
    assert not cycles, "import cycles (a module imports only from layers below it):\n" + "\n".join(cycles)


# Runs under `python -W error`: numpy, torch and gymnasium, which nearly every module imports, are
# loaded once (their own warnings fail it here), then each rlgen module is imported in a child forked
# from that interpreter: it holds no rlgen module but what it imports itself, without paying torch's
# start-up once per module. A child's stderr is what the import printed; a traceback when it failed.
_DRIVER = """
import importlib, os, sys, tempfile, traceback
import gymnasium, numpy, torch
torch.set_num_threads(1)
modules, width, printed, running = sys.argv[2:], int(sys.argv[1]), {}, {}
folder = tempfile.mkdtemp()
def reap():
    pid, status = os.wait()
    module, path = running.pop(pid)
    text = open(path).read()
    code = os.waitstatus_to_exitcode(status)
    printed[module] = text if code == 0 else f"exit {code}\\n{text}"
for module in modules:
    if len(running) >= width:
        reap()
    path = os.path.join(folder, module)
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT), 2)
        code = 0
        try:
            importlib.import_module(module)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    running[pid] = (module, path)
while running:
    reap()
import json
print(json.dumps(printed))
"""


def imported_alone(modules: list[str]) -> dict[str, str]:
    """Module -> what importing it alone printed to stderr (empty when it imported cleanly)."""
    path = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")]))
    width = str(min(4, os.cpu_count() or 1))
    out = subprocess.run([sys.executable, "-W", "error", "-c", _DRIVER, width, *modules], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": path}, check=False)
    assert out.returncode == 0, f"the import driver failed (exit {out.returncode}):\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="children are forked from one interpreter")
def test_every_module_imports_alone_without_warnings():
    modules = sorted(package_modules(PACKAGE_DIR))
    assert {"rlgen", "rlgen.agents", "rlgen.envs"} <= set(modules)
    printed = imported_alone(modules)
    assert set(printed) == set(modules)
    failures = {module: text for module, text in printed.items() if text}
    assert not failures, "\n\n".join(f"import {m}:\n{text.strip()[-2000:]}" for m, text in failures.items())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="children are forked from one interpreter")
def test_the_import_check_sees_a_warning_a_failure_and_a_module_that_needs_another_first(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/warns.py": "import warnings\nwarnings.warn('old', DeprecationWarning)\n",
        "pkg/fails.py": "import no_such_module_here\n",
        "pkg/needs.py": "import pkg\npkg.helper.f()\n",  # works only after someone imported pkg.helper
        "pkg/helper.py": "def f():\n    pass\n",
        "pkg/clean.py": "from pkg.helper import f\nf()\n",
    })
    order = ["pkg.helper", "pkg.warns", "pkg.fails", "pkg.needs", "pkg.clean"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(tmp_path))
        printed = imported_alone(order)
    assert printed["pkg.helper"] == "" and printed["pkg.clean"] == ""
    assert "DeprecationWarning: old" in printed["pkg.warns"]
    assert "ModuleNotFoundError" in printed["pkg.fails"]
    assert "has no attribute 'helper'" in printed["pkg.needs"]
