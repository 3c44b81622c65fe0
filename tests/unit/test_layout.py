"""The house rules of the layout, checked on the source: no import cycles among the project's
modules, each package imports only what it may, and no module outside tests/ grows past 400 lines."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cogs", "core", "providers", "store")
# package -> top-level names it must never import (providers/ knows nothing of Discord or the bot...)
FORBIDDEN = {
    "providers": {"discord", "cogs", "core", "store", "bot"},
    "store": {"discord", "cogs", "core", "bot"},
    "core": {"discord", "cogs", "bot"},
    "cogs": {"aiohttp"},  # cogs build no HTTP requests: the provider layer does
}


def project_modules() -> dict[str, Path]:
    modules = {"bot": ROOT / "bot.py"}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports(name: str, path: Path, modules: dict[str, Path] | None = None) -> set[str]:
    """Every module `name` imports, wherever the import stands, except under `if TYPE_CHECKING:`.
    `from pkg import module` counts as importing the module (not the package's __init__)."""
    modules = modules or project_modules()
    tree = ast.parse(path.read_text())
    type_only = {id(node) for stmt in ast.walk(tree) if isinstance(stmt, ast.If)
                 and "TYPE_CHECKING" in ast.unparse(stmt.test) for node in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                found.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {m for m in imports(name, path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_among_the_projects_modules():
    edges = graph()
    assert len(edges) > 40  # the walk found the project
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_each_package_imports_only_what_it_may():
    wrong = []
    for name, path in project_modules().items():
        package = name.split(".")[0]
        for module in imports(name, path):
            if module.split(".")[0] in FORBIDDEN.get(package, ()):
                wrong.append(f"{name} imports {module}")
    assert not wrong, wrong


def test_no_module_outside_tests_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): n for path in [*ROOT.glob("*.py"), *ROOT.glob("bench/*.py"),
                                                       *(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))]
            if (n := len(path.read_text().splitlines())) > 400}
    assert not long, long
