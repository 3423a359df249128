"""The package's shape: no lower layer imports a higher one, and every exception sits on the drawn tree.

The layers are those of docs/architecture.md. Imports inside functions and under TYPE_CHECKING count too:
a lazy upward import is still a dependency. A new top-level module or package must be placed here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import gensearcher
from gensearcher.errors import GenSearcherError

# Lowest first. A unit may import only units of a lower layer (and itself).
LAYERS: list[set[str]] = [
    {"__init__", "errors", "_files", "_http", "_concurrency", "_redact"},
    {"_env_sources", "_reference_env"},
    {"config"},
    {"messages"},
    {"images"},
    {"web", "policy", "data", "_settings_docs"},  # data: the stage records (config, errors, messages only)
    {"tools"},
    {"agent"},
    {"generate", "judge"},  # judge reads answers with the agent's lenient JSON
    {"server", "evaluate", "pipeline"},
    {"viewer", "train"},  # viewer: reads every stage's files; train: SFT data and training over the agent
    {"cli", "testing"},  # testing: doubles shipped for users' tests
    {"__main__"},
]
# Upward edges known and to be removed: each must still exist (delete its line when it is gone).
KNOWN_UPWARD: set[str] = set()
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
ROOT = Path(gensearcher.__file__).parent


def imported_units(path: Path) -> set[str]:
    """The gensearcher units (first name under gensearcher) a source file imports."""
    units: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = ([f"gensearcher.{alias.name}" for alias in node.names] if node.module == "gensearcher"
                     else [node.module])
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "gensearcher":
                # `from gensearcher import __version__` is the package's own __init__.
                units.add(parts[1] if len(parts) > 1 and parts[1] != "__version__" else "__init__")
    return units


def unit_of(path: Path) -> str:
    first = path.relative_to(ROOT).parts[0]
    return first.removesuffix(".py")


def test_every_unit_has_a_layer():
    units = {unit_of(path) for path in ROOT.rglob("*.py")}
    assert units - set(RANK) == set(), "place the new module or package in LAYERS (and docs/architecture.md)"


def test_no_lower_layer_imports_a_higher_one():
    upward = set()
    for path in sorted(ROOT.rglob("*.py")):
        unit = unit_of(path)
        for target in imported_units(path) - {unit}:
            if RANK.get(target, len(LAYERS)) >= RANK[unit]:
                upward.add(f"{path.relative_to(ROOT)} imports {target}")
    assert upward - KNOWN_UPWARD == set()
    assert KNOWN_UPWARD - upward == set(), "an upward edge is gone: delete it from KNOWN_UPWARD"


def test_the_check_sees_lazy_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from gensearcher.cli import app\n    import gensearcher.train.grpo\n"
                      "from gensearcher import __version__, errors\n")
    assert imported_units(source) == {"cli", "train", "__init__", "errors"}


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(gensearcher.__path__, "gensearcher."):
        if info.name.startswith(("gensearcher.testing", "gensearcher.__main__")):
            continue  # test doubles raise nothing of ours
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra is not installed
            continue
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_exception_is_on_the_tree_that_errors_draws():
    classes = _exception_classes()
    assert len(classes) >= 15
    off_tree = [c.__qualname__ for c in classes if not issubclass(c, GenSearcherError)]
    assert off_tree == []
    drawing = gensearcher.errors.__doc__ or ""
    undrawn = [c.__qualname__ for c in classes if c.__qualname__ not in drawing]
    assert undrawn == [], "draw the class in errors.py's docstring"
    # The drawing's indentation is the real inheritance: each class sits under its parent.
    lines = [line for line in drawing.splitlines() if "── " in line]
    depth = {line.split("── ")[1].split()[0].split(".")[-1]: line.index("── ") for line in lines}
    for cls in classes:
        parent = cls.__mro__[1]
        if cls is not GenSearcherError and parent is not GenSearcherError:
            assert depth[cls.__qualname__] > depth[parent.__qualname__], cls.__qualname__
