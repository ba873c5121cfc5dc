"""The design's import rules (docs/ARCHITECTURE.md), checked over every module of the project.

Every ``.py`` file of common/, corpus/, train/, recover/ and hpc/ is parsed with :mod:`ast` (nothing is
imported, so the check takes a second and needs no torch). Every import statement counts, wherever it
is — at the top, inside a function, under ``try:`` — except under ``if TYPE_CHECKING:``, which never
runs. Relative imports are resolved; ``from pkg import name`` where ``pkg.name`` is a module is an edge
to that module, otherwise to ``pkg`` (its ``__init__``). A lazy import inside a function is still an
import: it runs whenever that function does, so it counts for the layering and for cycles alike.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "corpus", "train", "recover", "hpc")

# What the design allows across package lines (see docs/ARCHITECTURE.md, "What each package may import").
COMMON_THIRD_PARTY = {"yaml"}
CORPUS_FORBIDDEN = {"torch", "transformers", "deepspeed", "peft", "train", "recover", "hpc"}
TRAIN_MAY_IMPORT_OF_CORPUS = {"corpus.indexed", "corpus.mix", "corpus.identity"}
RECOVER_FORBIDDEN = {"corpus", "train", "hpc"}


# --- the walker -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    """One imported name as written, resolved to an absolute dotted name."""

    module: str        # the importing module
    target: str        # absolute dotted name: "torch.nn", "corpus.indexed", "recover.errors.RecoverError"
    names: tuple[str, ...]  # for ``from X import a, b``: ("a", "b"); () for ``import X``
    lineno: int
    path: Path


@dataclass
class Graph:
    modules: dict[str, Path] = field(default_factory=dict)        # dotted name → file
    imports: list[Import] = field(default_factory=list)
    edges: dict[str, set[str]] = field(default_factory=dict)       # project module → project modules
    external: dict[str, set[str]] = field(default_factory=dict)    # project module → top-level names
    where: dict[tuple[str, str], str] = field(default_factory=dict)  # (a, b) → "path:line" of a's import


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(node: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement below ``node``, at any depth, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            # The else branch does run.
            yield from _import_nodes(ast.Module(body=child.orelse, type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None, path: Path) -> str:
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(package) - 1 or not package:
        raise AssertionError(f"{path}: relative import beyond the top-level package")
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def parse_imports(root: Path, path: Path) -> list[Import]:
    module = module_name(root, path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, (), node.lineno, path) for a in node.names]
        else:
            target = (node.module or "") if node.level == 0 else _resolve_relative(
                module, path.name == "__init__.py", node.level, node.module, path)
            found.append(Import(module, target, tuple(a.name for a in node.names), node.lineno, path))
    return found


def _known(modules: dict[str, Path], dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is a project module (``a.b.C`` → ``a.b``), or None."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in modules:
            return name
    return None


def build_graph(root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
    g = Graph()
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            g.modules[module_name(root, path)] = path
    tops = {name.split(".")[0] for name in g.modules}
    for name, path in g.modules.items():
        g.edges[name] = set()
        g.external[name] = set()
        for imp in parse_imports(root, path):
            g.imports.append(imp)
            if imp.target.split(".")[0] not in tops:
                g.external[name].add(imp.target.split(".")[0])
                continue
            # ``from pkg import sub``: an edge to the submodule; ``from pkg import name``: to pkg itself.
            targets = []
            subs = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in g.modules]
            targets += subs
            if not imp.names or len(subs) < len(imp.names):
                known = _known(g.modules, imp.target)
                if known is None:
                    raise AssertionError(f"{path}:{imp.lineno}: imports {imp.target!r}, which is no module of "
                                         f"the project")
                targets.append(known)
            for t in targets:
                if t != name:
                    g.edges[name].add(t)
                    g.where.setdefault((name, t), f"{path.relative_to(root)}:{imp.lineno}")
    return g


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles as paths ``[a, b, …, a]``: for every strongly connected component with more than one
    module, the shortest cycle through each of its modules (each cycle once, starting at its smallest name)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan, iteratively (a deep package would overflow recursion)
        work = [(v, iter(sorted(edges.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == node:
                        break
                components.append(comp)

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)

    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for comp in components:
        if len(comp) < 2:
            continue
        for start in sorted(comp):
            # The shortest path start → … → last → start inside the component (breadth first).
            parent: dict[str, str | None] = {start: None}
            queue = deque([start])
            last = None
            while queue and last is None:
                u = queue.popleft()
                for w in sorted(edges.get(u, ())):
                    if w == start:
                        last = u
                        break
                    if w in comp and w not in parent:
                        parent[w] = u
                        queue.append(w)
            path: list[str] = []
            node: str | None = last
            while node is not None:
                path.append(node)
                node = parent[node]
            path.reverse()
            i = path.index(min(path))
            key = tuple(path[i:] + path[:i])
            if key not in seen:
                seen.add(key)
                cycles.append([*key, key[0]])
    return cycles


# --- the project's graph -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def graph() -> Graph:
    return build_graph(ROOT)


def _package(module: str) -> str:
    return module.split(".")[0]


def _edges_of(g: Graph, pkg: str) -> Iterable[tuple[str, str]]:
    for a in sorted(g.edges):
        if _package(a) == pkg:
            for b in sorted(g.edges[a]):
                yield a, b


def _report(what: str, bad: list[str]) -> str:
    return f"{what}:\n  " + "\n  ".join(bad)


def test_the_walker_sees_the_whole_project(graph: Graph) -> None:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    assert len(graph.modules) == len(files) > 50
    assert {_package(m) for m in graph.modules} == set(PACKAGES)
    assert "corpus.indexed" in graph.edges["train.data"]
    assert "common.cli" in graph.edges["recover.cli"]
    assert "torch" in graph.external["train.data"]
    assert sum(len(e) for e in graph.edges.values()) > 100


def test_common_imports_only_the_standard_library_and_yaml(graph: Graph) -> None:
    bad = [f"{a} -> {b}  ({graph.where[a, b]})" for a, b in _edges_of(graph, "common") if _package(b) != "common"]
    bad += [f"{m} -> {x}" for m in sorted(graph.external) if _package(m) == "common"
            for x in sorted(graph.external[m]) if x not in sys.stdlib_module_names and x not in COMMON_THIRD_PARTY]
    assert not bad, _report("common/ must import nothing but the standard library and PyYAML", bad)


def test_corpus_imports_no_torch_and_no_later_stage(graph: Graph) -> None:
    bad = [f"{a} -> {b}  ({graph.where[a, b]})" for a, b in _edges_of(graph, "corpus") if _package(b) in
           CORPUS_FORBIDDEN]
    bad += [f"{m} -> {x}" for m in sorted(graph.external) if _package(m) == "corpus"
            for x in sorted(graph.external[m]) if x in CORPUS_FORBIDDEN]
    assert not bad, _report("corpus/ runs on login nodes and CPU array tasks: no torch/transformers/deepspeed/"
                            "peft, no train/recover/hpc", bad)


def test_train_imports_only_the_reader_side_of_corpus(graph: Graph) -> None:
    bad = [f"{a} -> {b}  ({graph.where[a, b]})" for a, b in _edges_of(graph, "train")
           if _package(b) == "corpus" and b not in TRAIN_MAY_IMPORT_OF_CORPUS]
    assert not bad, _report(f"train/ may import of corpus only {', '.join(sorted(TRAIN_MAY_IMPORT_OF_CORPUS))}",
                            bad)


def test_recover_stands_alone(graph: Graph) -> None:
    bad = [f"{a} -> {b}  ({graph.where[a, b]})" for a, b in _edges_of(graph, "recover")
           if _package(b) in RECOVER_FORBIDDEN]
    assert not bad, _report("recover/ must import neither corpus, train nor hpc", bad)


def test_nothing_imports_hpc(graph: Graph) -> None:
    bad = [f"{a} -> {b}  ({graph.where[a, b]})" for a in sorted(graph.edges) if _package(a) != "hpc"
           for b in sorted(graph.edges[a]) if _package(b) == "hpc"]
    assert not bad, _report("only hpc/ imports hpc", bad)


def test_no_import_cycles(graph: Graph) -> None:
    cycles = find_cycles(graph.edges)
    shown = [" -> ".join(c) + "  (" + ", ".join(graph.where[a, b] for a, b in zip(c, c[1:])) + ")"
             for c in cycles]
    assert not cycles, _report(f"{len(cycles)} import cycle(s)", shown)


# --- the walker on a tree made for it -------------------------------------------------------------

def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def test_walker_resolves_relative_lazy_and_submodule_imports(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "pa/__init__.py": "from .core import thing\n",
        "pa/core.py": "import os\nthing = 1\n",
        "pa/sub/__init__.py": "",
        "pa/sub/x.py": ("from typing import TYPE_CHECKING\n"
                        "from .. import core\n"              # a submodule: edge to pa.core
                        "from ..core import thing\n"
                        "from pa import thing as t2\n"       # a name: edge to pa (its __init__)
                        "if TYPE_CHECKING:\n    import pb.y\n"
                        "else:\n    import json\n"
                        "def f():\n    import pb.z\n"),       # inside a function: counts
        "pb/__init__.py": "",
        "pb/y.py": "",
        "pb/z.py": "import numpy.linalg\ntry:\n    from pa.sub import x\nexcept ImportError:\n    pass\n",
    })
    g = build_graph(tmp_path, ("pa", "pb"))
    assert g.edges["pa"] == {"pa.core"}
    assert g.edges["pa.sub.x"] == {"pa.core", "pa", "pb.z"}
    assert g.edges["pb.z"] == {"pa.sub.x"}
    assert g.external["pa.sub.x"] == {"typing", "json"}
    assert g.external["pb.z"] == {"numpy"}
    assert find_cycles(g.edges) == [["pa.sub.x", "pb.z", "pa.sub.x"]]


def test_cycles_are_reported_as_paths(tmp_path: Path) -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"d2"}, "d2": {"d"}, "e": {"a"}}
    assert sorted(find_cycles(edges)) == [["a", "b", "c", "a"], ["d", "d2", "d"]]
    # Two cycles through one module: both are reported.
    assert sorted(find_cycles({"a": {"b", "c"}, "b": {"a"}, "c": {"a"}})) == [["a", "b", "a"], ["a", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
