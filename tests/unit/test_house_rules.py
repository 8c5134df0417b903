"""Rules of the house that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from application.bootstrap import PROJECTIONS

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("domain", "application", "projections", "interfaces", "workers")


def owners() -> dict[str, Path]:
    """Each read model table -> the package of the read model that owns it."""
    found = {}
    for projection in PROJECTIONS.values():
        package = ROOT / type(projection).__module__.rsplit(".", 1)[0].replace(".", "/")
        for table in projection.tables:
            found[table] = package
    return found


def string_literals(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(
            node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        )
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_every_read_model_is_a_package_that_owns_its_tables() -> None:
    for table, package in owners().items():
        assert (package / "__init__.py").is_file(), (table, package)


# The exception, by design: the usage ledger is the indexed copy of the
# metering history that every read model's as-of answers read (a point of the
# history, projections/history.py), so that module names it too, and the read
# model that keeps it (how far the ledger goes is that one's tracking).
SHARED = {
    ("projections/history.py", "billing_usage_ledger"),
    ("projections/history.py", "billing_usage_daily"),
}


def test_no_module_outside_a_read_models_package_names_its_tables() -> None:
    tables = owners()
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, tables)) + r")\b")
    misplaced = [
        f"{path.relative_to(ROOT)}:{line} names {match[1]}"
        for top in PRODUCTION
        for path in sorted((ROOT / top).rglob("*.py"))
        for line, text in string_literals(path)
        for match in pattern.finditer(text)
        if not path.is_relative_to(tables[match[1]])
        and (str(path.relative_to(ROOT)), match[1]) not in SHARED
    ]

    assert misplaced == []


def test_the_rule_catches_a_table_named_outside_its_package(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        '"""Docs may say billing_usage_daily."""\nSQL = "FROM billing_usage_daily"\n'
    )

    assert [text for _, text in string_literals(module)] == ["FROM billing_usage_daily"]
