"""The package's shape: no module imports a module that imports it back (directly or around a
circle), counting every import in the source — inside functions and under TYPE_CHECKING too —
and the extension points are found through their registries."""

from __future__ import annotations

import ast
from pathlib import Path

import stillhouse
from stillhouse import registry

SOURCE = Path(stillhouse.__file__).parent


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph(root: Path) -> dict[str, set[str]]:
    """For each module, the package's modules it imports anywhere in its source. ``from P
    import N`` counts as importing module ``P.N`` when that is a module, else ``P``."""
    modules = module_names(root)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(filter(None, (known(alias.name) for alias in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found = full if full in modules else known(base)
                    if found:
                        imported.add(found)
        imported.discard(name)
        graph[name] = imported
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from .. import a\nfrom . import c\n")
    (package / "sub" / "c.py").write_text("import json\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a", "pkg.sub.c"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    graph = import_graph(SOURCE)
    assert len(graph) > 100  # the whole package was read
    assert cycles(graph) == [], "import circles (replace the factory by a registry lookup)"


def test_every_extension_point_is_found_by_name_without_importing_it_by_name() -> None:
    recipes = registry.recipes.all()
    assert {
        "linear",
        "encoder",
        "contrastive-encoder",
        "lora-encoder",
        "lora-llm",
        "spacy-ner",
    } <= set(recipes)
    assert all(recipe.name == name for name, recipe in recipes.items())
    assert {"llamacpp", "openai"} <= set(registry.backends.all())
    assert {"preds", "llm", "model", "cascade"} <= set(registry.system_sources.all())
    assert registry.recipes.get("no-such-recipe") is None
    # the code that looks them up never names an implementation's module
    graph = import_graph(SOURCE)
    lookups = ("stillhouse.train.load", "stillhouse.train.run", "stillhouse.predictors")
    for module in (*lookups, "stillhouse.llm.backend"):
        named = [m for m in graph[module] if ".recipes." in m or ".backends." in m]
        named += [m for m in graph[module] if m.startswith("stillhouse.systems.")]
        assert named == [], f"{module} imports {named}"


def docs_layout() -> dict[str, str]:
    """The entries of the Layout block of docs/layout.md (the documentation's Layout page): path
    (as indented there, folders with a trailing /) → the text after it."""
    page = (SOURCE.parent.parent / "docs" / "layout.md").read_text(encoding="utf-8")
    block = page.split("\n```\n", 2)[1]
    entries: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in block.splitlines()[1:]:  # the first line is src/stillhouse/ itself
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent >= 16:  # a description's next line
            continue
        name, _, text = line.strip().partition(" ")
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = "".join(parent for _, parent in parents) + name
        entries[path] = text.strip()
        if name.endswith("/"):
            parents.append((indent, name))
    return entries


def test_the_docs_layout_names_every_part_of_the_tree_and_nothing_else() -> None:
    entries = docs_layout()
    inside = {
        path for path in entries if not path.startswith(("tests/", "bench/", "examples/", "docs/"))
    }
    tree = {
        path.name + ("/" if path.is_dir() else "")
        for path in SOURCE.iterdir()
        if path.name not in ("__init__.py", "__pycache__")
    }
    assert {path for path in inside if "/" not in path.rstrip("/")} == tree
    for path in inside:
        assert (SOURCE / path).exists(), f"docs/layout.md names {path}, which is not in the tree"
    assert all(entries.values()), "every entry says what it is"
