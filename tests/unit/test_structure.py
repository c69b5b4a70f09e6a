"""The package's layering, checked on its source (issue 21): the pure layers import nothing
of the layers that do I/O, and only the I/O layers start programs or fork."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nfreplay"
PURE = ["proto", "session", "config.py", "rules", "limits.py", "counters.py", "errors.py"]
IO_LAYERS = ("nfreplay.engine", "nfreplay.adapters", "nfreplay.cli")
# What may run programs or fork: the adapters, the rule manager's backends, and the daemon
# lifecycle (detaching with --daemon; the --workers supervisor's processes).
MAY_SPAWN = ["adapters", "rules", "cli/lifecycle.py", "cli/workers.py"]


def modules(*names: str) -> list[Path]:
    out: list[Path] = []
    for name in names:
        path = PACKAGE / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


@pytest.mark.parametrize("path", modules(*PURE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_layers_import_no_io_layer(path: Path) -> None:
    bad = sorted(m for m in imports(path) if m.startswith(IO_LAYERS))
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"


def test_only_the_io_layers_spawn_or_fork() -> None:
    allowed = set(modules(*MAY_SPAWN))
    offenders = []
    for path in modules("."):
        if path in allowed:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("fork", "forkpty") \
                    and isinstance(node.value, ast.Name) and node.value.id == "os":
                offenders.append(f"{path.relative_to(PACKAGE)}: os.{node.attr}")
        if any(m == "subprocess" or m.startswith("subprocess.") or m == "multiprocessing"
               for m in imports(path)):
            offenders.append(f"{path.relative_to(PACKAGE)}: subprocess")
    assert not offenders, offenders


def test_the_check_sees_a_lazy_import() -> None:
    """The checks above would pass on nothing: make sure they see what they look for."""
    assert "nfreplay.engine.assist" in imports(PACKAGE / "cli" / "assist.py")
    assert "subprocess" in imports(PACKAGE / "adapters" / "probes.py")


def test_no_test_module_imports_another() -> None:
    """What tests share lives in helper modules (tests/lab/helpers.py, conftest.py, ...):
    importing a test module runs its collection-time code and couples the two."""
    tests = PACKAGE.parent / "tests"
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] + [a.name for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(part.startswith("test_") for n in names for part in n.split(".")):
                offenders.append(str(path.relative_to(tests)))
    assert not offenders, offenders
