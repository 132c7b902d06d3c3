"""The package's shape: private modules stay private, errors share one root."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import tuner
import tuner.errors

ROOT = Path(tuner.__file__).parent


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_no_module_imports_a_private_module_of_another_package():
    offending = []
    for path in ROOT.rglob("*.py"):
        package = ".".join(("tuner", *path.relative_to(ROOT).parent.parts))
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "tuner":
                continue
            for i, part in enumerate(parts[1:], start=1):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if owner != package:
                        offending.append(f"{path.relative_to(ROOT.parent)} imports {name}")
                    break
    assert not offending, "\n".join(offending)


def test_every_error_greentune_raises_on_purpose_derives_from_one_root():
    errors = [obj for _, obj in inspect.getmembers(tuner.errors, inspect.isclass) if obj.__module__ == "tuner.errors"]
    exceptions = [e for e in errors if not issubclass(e, Warning)]
    warnings = [e for e in errors if issubclass(e, Warning)]
    assert exceptions and all(issubclass(e, tuner.GreentuneError) for e in exceptions)
    assert warnings and all(issubclass(w, tuner.GreentuneWarning) for w in warnings)
    for name in ("GreentuneError", "ConfigError", "OutputWriteError", "TrackingUnavailable"):
        assert getattr(tuner, name) is getattr(tuner.errors, name)


def test_no_error_class_is_defined_outside_the_errors_module():
    stray = []
    for path in ROOT.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if bases & {"Exception", "RuntimeError", "ValueError", "OSError", "UserWarning", "Warning"}:
                    stray.append(f"{path.relative_to(ROOT.parent)}: {node.name}")
    assert not stray, stray
