"""The package layering of docs/layout.md, checked on every module's imports.

The rules are read from the table in docs/layout.md (its one home) and every module of vdit is parsed with
`ast` (nothing is imported), including the imports inside functions and under TYPE_CHECKING.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vdit"
LAYOUT = ROOT / "docs" / "layout.md"

# Imports that break the rules today and are being removed by slices of issue 18 still in flight, as
# (importing module, imported module). The list only shrinks: an entry that no longer occurs fails below.
PENDING_EXCEPTIONS: set[tuple[str, str]] = set()


def module_names() -> dict[str, Path]:
    """{dotted module name: file} of every module of the package (`vdit.models` for its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = module_names()


def imports_of(module: str, path: Path) -> set[str]:
    """The vdit modules `module` imports (`from vdit.x import name` counts as vdit.x.name when that is
    a module, else vdit.x)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)] + ([node.module] if node.module else [])
                source = ".".join(base)
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "vdit":
                continue
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != module:
                found.add(target)
    return found


GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def read_rules() -> tuple[set[str], dict[str, set[str]]]:
    """(the base modules, {package: what it may import}) from the table of docs/layout.md."""
    base: set[str] = set()
    rules: dict[str, set[str]] = {}
    for line in LAYOUT.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.match(r"(base:\s*)?`vdit", cells[0]):
            continue
        names = re.findall(r"`([\w.]+)`", cells[0])
        allowed = set(re.findall(r"`([\w.]+)`", cells[2]))
        if cells[0].startswith("base:"):
            base = set(names)
        for name in names:
            rules[name] = allowed
    return base, rules


BASE, RULES = read_rules()


def part_of(module: str) -> str:
    """The row of the table a module belongs to: a base module, or its top-level package."""
    if module in BASE:
        return module
    return ".".join(module.split(".")[:2])


def allowed(source: str, target: str) -> bool:
    part = part_of(source)
    if target in BASE or part_of(target) == part:
        return True
    # `vdit` names the package's __init__ only; any other entry covers its submodules too
    return any(target == entry or (entry != "vdit" and target.startswith(entry + ".")) for entry in RULES[part])


def test_the_table_covers_every_package():
    assert BASE >= {"vdit", "vdit.errors"}, "docs/layout.md has no base row"
    missing = sorted({part_of(m) for m in MODULES} - set(RULES))
    assert not missing, f"packages without a row in docs/layout.md: {missing}"
    # a misspelt entry would allow nothing; vdit.training and vdit.profiling come with slices in flight
    unknown = set().union(*RULES.values()) - set(MODULES) - {"vdit.training", "vdit.profiling"}
    assert not unknown, f"docs/layout.md names modules that do not exist: {sorted(unknown)}"


def test_every_import_follows_the_table():
    bad = sorted((s, t) for s, targets in GRAPH.items() for t in targets
                 if not allowed(s, t) and (s, t) not in PENDING_EXCEPTIONS)
    assert not bad, "imports against docs/layout.md:\n" + "\n".join(f"  {s} -> {t}" for s, t in bad)


def test_pending_exceptions_still_occur():
    """An exception that no longer occurs must leave the list (the lead empties it as slices merge)."""
    stale = sorted(e for e in PENDING_EXCEPTIONS if e[1] not in GRAPH.get(e[0], set()))
    assert not stale, f"remove from PENDING_EXCEPTIONS: {stale}"


def test_no_import_cycles():
    """No module reaches itself through its imports (lazy imports inside functions included)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH.get(v, ())):
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
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"modules importing each other: {cycles}"


def test_mini_uses_public_names_only():
    """vdit.mini is a user of the library: it imports no underscore name from another package."""
    private = []
    for module, path in MODULES.items():
        if part_of(module) != "vdit.mini":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vdit.") \
                    and part_of(node.module) != "vdit.mini":
                private += [f"{module}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, private


@pytest.mark.parametrize(("source", "target", "ok"), [
    ("vdit.evaluation.jf", "vdit.models.vdit", False),
    ("vdit.models.vdit", "vdit.data.common", False),
    ("vdit.data.transforms", "vdit.models.inputs", True),
    ("vdit.data.transforms", "vdit.models.vdit", False),
    ("vdit.engine.recipes", "vdit.mini.data", False),
    ("vdit.mini.recipe", "vdit.engine.recipes", True),
    ("vdit.models.vdit", "vdit", True),
    ("vdit.fileio", "vdit.config", False),
])
def test_the_rules_read_as_documented(source, target, ok):
    assert allowed(source, target) is ok
