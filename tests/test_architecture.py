"""The tree's architecture, checked: data flows one way through the rooms of docs/architecture.md.

Every ``import`` of ``attention``, ``app`` and ``benchmarks`` is read with :mod:`ast` (those inside functions too;
those under ``if TYPE_CHECKING:`` never run and are skipped). The test fails on an import cycle between modules, on
a module importing a room above its own, on the engine importing Dash, plotly or Celery, and on an import inside a
function without a comment saying why it is lazy (hiding a cycle that way is caught by the cycle check, which counts
those imports too).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Rooms from the bottom up: a module may import its own room or one below it, never one above.
ROOMS = (
    "attention",
    "app.core",
    "app.service",
    "app.figures",
    "app.views",
    "app.export",
    "app.dashboard",
    "app.corpus",
    "app.team",
    "app.testing",
    "benchmarks",
    "app.cli",
)
ENGINE_NEVER = ("dash", "plotly", "celery", "flask", "app", "benchmarks")
# Rooms that promise to stay free of some libraries: the page's state is free of Dash; figures are pure plotly.
FREE_OF = {"app.core": ("dash", "flask", "plotly"), "app.figures": ("dash", "flask")}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (one of ours), or the top-level name of a third-party one
    line: int
    in_function: bool
    commented: bool  # a comment on the import, on its run of imports or just above it (pragmas do not count)
    declared: bool = False  # the module's "# Lazy imports (names): why" line names what it imports


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    paths = [p for package in ("attention", "app", "benchmarks") for p in (ROOT / package).rglob("*.py")]
    return {module_name(p): p for p in paths}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def _function_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(range(node.body[0].lineno, node.end_lineno + 1))
    return lines


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The modules an import statement loads: ours resolved to the deepest module that exists."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    resolved = []
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        resolved.append(name)
    return resolved


def _line(node: ast.AST) -> int:
    return node.lineno


def _block_starts(nodes: list[ast.Import | ast.ImportFrom], lines: list[str]) -> dict[int, int]:
    """Each import's line -> the first line of its run of imports (adjacent, or apart by blank lines only)."""
    starts: dict[int, int] = {}
    for before, node in zip([None, *nodes], nodes, strict=False):
        gap = range(before.end_lineno, node.lineno - 1) if before is not None else ()
        adjacent = before is not None and all(not lines[i].strip() for i in gap)
        starts[node.lineno] = starts[before.lineno] if adjacent else node.lineno
    return starts


# A module-level comment naming what a module imports inside its functions and why: "# Lazy imports (torch, tqdm): …"
LAZY_MARK = re.compile(r"^# Lazy imports \(([\w., ]+)\): \S")
PRAGMAS = ("noqa", "type:", "fmt:", "isort:", "pragma")


def _says_why(lines: list[str]) -> bool:
    """Some line holds a comment that is more than a tool's pragma."""
    comments = [line.split("#", 1)[1].strip() for line in lines if "#" in line]
    return any(comment and not comment.startswith(PRAGMAS) for comment in comments)


def _declared(lines: list[str]) -> tuple[str, ...]:
    """The names a module's ``# Lazy imports (…)`` line lists."""
    for line in lines:
        if match := LAZY_MARK.match(line):
            return tuple(name.strip() for name in match.group(1).split(","))
    return ()


def _covers(names: tuple[str, ...], target: str) -> bool:
    return any(target == name or target.startswith(name + ".") for name in names)


def imports() -> list[Import]:
    known = our_modules()
    found = []
    for module, path in known.items():
        source = path.read_text()
        lines = source.splitlines()
        declared = _declared(lines)
        tree = ast.parse(source)
        skipped, in_functions = _type_checking_lines(tree), _function_lines(tree)
        nodes = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)), key=_line)
        block_start = _block_starts(nodes, lines)
        for node in nodes:
            if node.lineno in skipped:
                continue
            start = block_start[node.lineno]
            block = lines[start - 1 : node.end_lineno]
            commented = _says_why([*block, lines[start - 2] if lines[start - 2].strip().startswith("#") else ""])
            for target in _targets(node, module, path.name == "__init__.py", known):
                if target != module:
                    found.append(
                        Import(
                            module,
                            target,
                            node.lineno,
                            node.lineno in in_functions,
                            commented,
                            _covers(declared, target),
                        )
                    )
    return found


def room(module: str) -> int | None:
    """The index of ``module``'s room in :data:`ROOMS` (the longest matching prefix), None for a third party."""
    matches = [i for i, name in enumerate(ROOMS) if module == name or module.startswith(name + ".")]
    return max(matches, key=lambda i: len(ROOMS[i])) if matches else None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    found.append(sorted(component))
    return found


@pytest.fixture(scope="module")
def found() -> list[Import]:
    return imports()


def test_the_scan_sees_the_tree(found):
    """The scan reads real imports (a broken scan would pass every check below)."""
    pairs = {(i.source, i.target) for i in found}
    assert ("app.views.render", "app.service.analysis") in pairs
    assert ("app.core.options", "attention.defaults") in pairs
    assert len(our_modules()) > 80


def test_no_import_cycles(found):
    known = our_modules()
    edges: dict[str, set[str]] = {module: set() for module in known}
    for item in found:
        if item.target in known:
            edges[item.source].add(item.target)
    assert cycles(edges) == []


def test_no_room_imports_a_room_above_it(found):
    upward = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in found
        if room(i.target) is not None and room(i.source) is not None and room(i.target) > room(i.source)
    ]
    assert upward == []


def test_the_engine_knows_no_dashboard_server_or_queue(found):
    bad = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in found
        if i.source.split(".")[0] == "attention" and i.target.split(".")[0] in ENGINE_NEVER
    ]
    assert bad == []


def test_the_page_state_and_the_figures_stay_free_of_dash(found):
    bad = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in found
        for prefix, banned in FREE_OF.items()
        if i.source.startswith(prefix) and i.target.split(".")[0] in banned
    ]
    assert bad == []


def test_imports_inside_functions_say_why(found):
    """An import inside a function is for a lazy heavy dependency and says so in a comment (on it, on the run of
    imports it belongs to or just above that run, or a module's ``# Lazy imports (names): why`` line naming what
    it imports); a ``# noqa`` is no reason. Anything else belongs at the top."""
    silent = sorted({f"{i.source}:{i.line}" for i in found if i.in_function and not (i.commented or i.declared)})
    assert silent == []


def test_the_checks_catch_what_they_name():
    """The helpers find a planted cycle and an upward import."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert room("app.dashboard.callbacks.views") > room("app.service.registry")
    assert room("app.corpus.page") == ROOMS.index("app.corpus")
    assert room("attention.corpus.run") == 0 and room("numpy") is None
    assert not _says_why(["    import os  # noqa: PLC0415"]) and _says_why(["    import torch  # heavy: loads on use"])
    assert _declared(["# Lazy imports (torch, tqdm): training only"]) == ("torch", "tqdm")
    assert _covers(("app.team",), "app.team.corpus_tasks") and not _covers(("torch",), "torchvision")


def test_no_function_is_longer_than_80_lines():
    """Small functions that say what they do: a longer one is split by section (declarative tables are data, not
    functions, and are not counted)."""
    long = []
    for module, path in our_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []
