"""The package's layers hold: imports only point down, and SQL stays in ``_sysdb``.

Every import counts, at module level, inside functions and under ``TYPE_CHECKING`` alike.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "dbos_async"

# Each layer may import itself and the layers listed after it, never those before it; the
# errors and the clock (two leaves) are the parts of the core the system database uses too.
LAYERS = ["testing", "cli", "admin", "facade", "integrations", "_features", "_core", "_sysdb"]
SHARED_BY_ALL = {"dbos_async._core._errors", "dbos_async._core._clock"}
FACADE = {"__init__", "_dbos", "_engine", "_setup", "_embedded", "error"}
_DB_CALL = re.compile(r"\.db\.(fetch|fetchrow|fetchval|execute)\(|\.pool\.")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "__main__":  # python -m dbos_async: the command line
        return "cli"
    if len(parts) == 1 or parts[1] in FACADE or parts[1] == "_facade":
        return "facade"
    return parts[1]


def _imports(path: Path) -> set[str]:
    """The package modules ``path`` imports, resolved to dotted names."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dbos_async"):
            found.add(node.module or "")
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def test_imports_only_point_down() -> None:
    wrong = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in _graph().items()
        for target in targets
        if LAYERS.index(_layer(target)) < LAYERS.index(_layer(module))
        and target not in SHARED_BY_ALL
    ]
    assert wrong == []


def test_no_import_cycle() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for target in graph[module]:
            visit(target, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_sql_is_sent_only_from_sysdb() -> None:
    outside = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "_sysdb" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _DB_CALL.search(line)
    ]
    assert outside == []
