"""The layout's rules, checked on the source: who may import whom, no cycle between packages, small modules.

Every import counts, including those under `if TYPE_CHECKING:` and inside functions (a function-local import
that dodges a cycle is still a cycle). ruff's banned-api (pyproject.toml) enforces the `discord` rule too, per
file; this test also sees the package graph, which no per-file rule can.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "cogs", "storage")
MAX_LINES = 400
#: Modules that wire the Discord side in (the entry point and its helpers); everything else in bot/ outside
#: bot/discord_app is the domain, which must stay free of discord and of the Discord side.
WIRING = {"bot.app", "bot.cli", "bot.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path) -> Iterator[str]:
    """Every module name an import statement in `path` names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`


@cache
def graph() -> dict[str, set[str]]:
    """module → the modules of ours it imports."""
    ours = modules()
    return {name: {target for target in imports_of(path) if target in ours and target != name}
            for name, path in ours.items()}


def third_party(name: str) -> set[str]:
    return {target.split(".")[0] for target in imports_of(modules()[name])}


def layer(name: str) -> str:
    if name.startswith("storage"):
        return "storage"
    if name.startswith("cogs"):
        return "cogs"
    if name == "bot.discord_app" or name.startswith("bot.discord_app."):
        return "discord_app"
    if name in WIRING:
        return "wiring"
    return "domain"


def package_of(name: str) -> str:
    """The package a module belongs to: `bot.jobs`, `storage`, `cogs.sora`; a module of bot/ itself is its own."""
    parts = name.split(".")
    if parts[0] == "storage":
        return "storage"
    path = modules()[name]
    return ".".join(parts[:2]) if path.name == "__init__.py" or len(parts) > 2 else name


def test_the_source_is_found() -> None:
    names = set(modules())
    assert {"bot.jobs.runner", "bot.discord_app.client", "cogs.sora", "storage.db"} <= names
    assert "bot.discord_app.notifier" in graph()["bot.discord_app.client"]


@pytest.mark.parametrize("name", sorted(n for n in modules() if layer(n) in ("domain", "storage")))
def test_domain_and_storage_never_import_discord_or_the_discord_side(name: str) -> None:
    assert "discord" not in third_party(name), f"{name} imports discord"
    assert not {t for t in graph()[name] if layer(t) in ("discord_app", "cogs", "wiring")}, name


@pytest.mark.parametrize("name", sorted(n for n in modules() if layer(n) == "storage"))
def test_storage_imports_nothing_of_the_bot(name: str) -> None:
    assert not {t for t in graph()[name] if not t.startswith("storage")}, name


@pytest.mark.parametrize("name", sorted(n for n in modules() if layer(n) != "cogs"))
def test_only_cogs_import_cogs(name: str) -> None:
    """The bot loads its extensions by name (`load_extension`); nothing imports them."""
    assert not {t for t in graph()[name] if layer(t) == "cogs"}, name


def test_the_package_graph_has_no_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for source, targets in graph().items():
        edges.setdefault(package_of(source), set()).update(
            package_of(t) for t in targets if package_of(t) != package_of(source))
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle between packages: " + " → ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert edges["bot.discord_app"] and "cogs.sora" not in edges["bot.discord_app"]


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_400_lines(name: str) -> None:
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it (docs/ARCHITECTURE.md)"


@pytest.mark.parametrize("name", sorted(n for n in modules() if layer(n) == "storage"))
def test_storage_writes_no_discord_markup(name: str) -> None:
    """Storage's sentences are plain text; bot.discord_app.render adds mentions where they help."""
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    texts = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    marked = [t for t in texts if any(mark in t for mark in ("<@", "<#", "<t:", "**", "__", "||"))]
    assert not marked, f"{name}: {marked[:3]}"
