"""The package's import graph: no cycles, imports only go down the layers, and ``import qtransformers`` stays light.

The graph is read from the source with ``ast`` (nothing is imported): an edge a -> b for every
``import``/``from ... import`` of a qtransformers module b in module a. Cycles are looked for among
the imports that run when a is imported (module level and class bodies, not inside functions, not
under ``if TYPE_CHECKING:``); the layer order is checked on every import, function-level ones too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "qtransformers"

# Layers, lowest first: a module may import only from its own layer or below.
LAYERS = {
    "_core": 0,
    "exceptions": 0,
    "functional": 1,
    "compress": 1,
    "profile": 1,
    "threads": 1,  # sizes the Rust core's thread pool at import
    "kernels": 2,
    "attention": 3,
    "mixers": 3,
    "quantum": 3,  # the simulators, and the "noisy"/"mps" attention backends built on them
    "models": 4,
    "": 4,  # qtransformers/__init__.py: the facade re-exporting public names (the CLI reads __version__ from it)
    "train": 5,
    "bench": 5,
    "integrations": 5,
    "viz": 5,
    "cli": 5,
    "__main__": 5,
}
# Only these wrap the Rust extension (they validate input before it reaches Rust; threads sizes its pool).
CORE_IMPORTERS = ("functional", "quantum", "threads")


def module_name(path: Path) -> str:
    parts = ("qtransformers", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    modules["qtransformers._core"] = PACKAGE / "_core.pyi"  # the extension: a leaf
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, at_import: bool, found: list[tuple[ast.AST, bool]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append((child, at_import))
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _imports(child, False, found)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            _imports(child, False, found)
        else:
            _imports(child, at_import, found)


def _targets(node: ast.AST, name: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        anchor = name.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(imports run at import time, all imports): module -> the qtransformers modules it imports."""
    modules = all_modules()
    at_import: dict[str, set[str]] = {m: set() for m in modules}
    every: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        if path.suffix == ".pyi":
            continue
        found: list[tuple[ast.AST, bool]] = []
        _imports(ast.parse(path.read_text(), str(path)), True, found)
        for node, runs in found:
            for target in _targets(node, name, path.name == "__init__.py", modules):
                if target.split(".")[0] != "qtransformers":
                    continue
                assert target in modules, f"{name} imports {target}, which is not a module of the package"
                every[name].add(target)
                if runs:
                    at_import[name].add(target)
    return at_import, every


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    assert top in LAYERS, f"{module} is in no layer: add {top!r} to LAYERS in {__file__}"
    return LAYERS[top]


def test_graph_sees_the_known_imports():
    at_import, every = import_graph()
    assert len(at_import) > 50
    assert "qtransformers.functional.fftconv" in at_import["qtransformers.kernels.dispatch"]
    assert "qtransformers._core" in at_import["qtransformers.functional.sampling"]
    # function-level imports are edges of `every` only
    assert "qtransformers.kernels.fftconv_triton" in every["qtransformers.kernels.dispatch"]
    assert "qtransformers.kernels.fftconv_triton" not in at_import["qtransformers.kernels.dispatch"]


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles():
    at_import, _ = import_graph()
    cycle = find_cycle(at_import)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_go_down_the_layers():
    _, every = import_graph()
    upward = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in every.items()
        for b in targets
        if layer(b) > layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_only_the_wrappers_import_the_extension():
    _, every = import_graph()
    importers = sorted(a for a, targets in every.items() if "qtransformers._core" in targets)
    assert importers, "nothing imports qtransformers._core"
    outside = [a for a in importers if a != "qtransformers" and a.split(".")[1] not in CORE_IMPORTERS]
    assert not outside, f"only {CORE_IMPORTERS} (and the facade's __version__) may import _core: {outside}"


HEAVY = ("matplotlib", "transformers", "triton")

LIGHT_SCRIPT = """
import json, sys
import qtransformers
after_import = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
from qtransformers import mixers
from qtransformers.attention import available_backends
names = (mixers.available(), available_backends())
after_lookup = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
kernels = sorted(m for m in sys.modules if m.startswith("qtransformers.kernels."))
print(json.dumps([after_import, after_lookup, kernels, names]))
"""


def test_import_is_light_and_registries_fill_on_first_lookup():
    out = subprocess.run(
        [sys.executable, "-c", LIGHT_SCRIPT.format(heavy=set(HEAVY))], capture_output=True, text=True, check=True
    )
    after_import, after_lookup, kernels, (mixer_names, backends) = json.loads(out.stdout.strip().splitlines()[-1])
    assert after_import == [], f"import qtransformers imported {after_import}"
    assert after_lookup == [], f"filling the registries imported {after_lookup}"
    assert kernels == ["qtransformers.kernels.dispatch"], f"Triton kernel modules imported: {kernels}"
    assert {"qrh", "hyena", "attention"} <= set(mixer_names)
    assert {"exact", "naive", "performer", "noisy", "mps"} <= set(backends)
