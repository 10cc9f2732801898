"""The package's shape (STYLE.md): imports point one way, no private names cross a module border,
functions fit on a screen, and ``monoquant_np.onnx`` is split by job.

The checks read the package's source with :mod:`ast`, counting imports inside functions too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import monoquant_np

PACKAGE = Path(monoquant_np.__file__).parent
#: Longest function body allowed, in lines, docstring aside.
MAX_FUNCTION_LINES = 60
#: Modules of the NumPy core may import only these outside the package (STYLE habit 9).
CORE_EXTERNAL = {"numpy", "__future__", "dataclasses", "typing", "collections", "numbers", "math", "json",
                 "zipfile", "io", "os", "pathlib", "importlib", "argparse", "sys", "warnings", "re", "tempfile",
                 "zlib", "types"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every import in module ``name``, relative ones resolved."""
    is_pkg = MODULES[name].name == "__init__.py"
    package = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package[: len(package) - node.level + 1]
                base = ".".join(stem + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full, None, node.lineno) if full in MODULES else (base, alias.name, node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    return {name: {mod for mod, _, _ in _imports(name) if mod in MODULES and mod != name} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_private_name_crosses_a_module_border():
    crossings = [
        f"{name}:{line} imports {imported} from {mod}"
        for name in MODULES
        for mod, imported, line in _imports(name)
        if mod.startswith("monoquant_np")
        and (
            (imported is not None and imported.startswith("_") and not imported.startswith("__"))
            or any(part.startswith("_") and not part.startswith("__") for part in mod.split("."))
        )
    ]
    assert crossings == []


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    first = body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
        first.value.value, str)
    start = (first.end_lineno or first.lineno) + 1 if has_doc and len(body) > 1 else first.lineno
    return (fn.end_lineno or fn.lineno) - start + 1


def test_functions_fit_on_a_screen():
    long = [
        f"{name}.{node.name}: {_body_lines(node)} lines"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_onnx_is_split_by_job():
    for package in ("export", "quantizer", "calibration"):
        assert MODULES[f"monoquant_np.onnx.{package}"].name == "__init__.py", package
        assert len([name for name in MODULES if name.startswith(f"monoquant_np.onnx.{package}.")]) >= 3, package


def test_no_two_modules_share_a_basename():
    seen: dict[str, str] = {}
    clashes = []
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        if path.stem in seen:
            clashes.append((seen[path.stem], name))
        seen[path.stem] = name
    assert clashes == []


def test_the_core_imports_numpy_and_the_standard_library_only():
    top = [name for name in MODULES if name.count(".") == 1 and MODULES[name].name != "__init__.py"]
    core = ["monoquant_np"] + [name for name in top if name not in ("monoquant_np.cli", "monoquant_np.__main__")]
    core += [name for name in MODULES if name.startswith(("monoquant_np.formats", "monoquant_np.algorithms"))]
    bad = [
        f"{name} imports {mod}"
        for name in core
        for mod, _, _ in _imports(name)
        if not mod.startswith("monoquant_np") and mod.split(".")[0] not in CORE_EXTERNAL
    ]
    layer = [
        f"{name} imports {mod}"
        for name in core
        for mod, _, _ in _imports(name)
        if mod.startswith(("monoquant_np.onnx", "monoquant_np.testing", "monoquant_np.cli"))
    ]
    assert bad == [] and layer == []


def test_every_module_imports_on_its_own():
    # a fresh interpreter, and the package forgotten before each module: an import order that only
    # works because another module was imported first shows up here
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    for m in [m for m in sys.modules if m == 'monoquant_np' or m.startswith('monoquant_np.')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
