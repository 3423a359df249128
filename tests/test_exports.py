"""Each public package lists its exports explicitly and completely (httpx-style), and every name exists.

ruff (RUF022) keeps each `__all__` sorted.
"""

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

import gensearcher

# Every package, found rather than listed, so a new one must declare its exports too; plus the top-level
# modules whose names are the API. The command line's API is the command, not its Python names.
_FOUND = pkgutil.walk_packages(gensearcher.__path__, "gensearcher.")
PACKAGES = sorted(["gensearcher",
                   *(info.name for info in _FOUND if info.ispkg and info.name != "gensearcher.cli")])
MODULES = ["gensearcher.config", "gensearcher.errors", "gensearcher.pipeline"]


@pytest.mark.parametrize("name", PACKAGES + MODULES)
def test_every_exported_name_exists(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported)
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.{attribute}"


@pytest.mark.parametrize("name", PACKAGES + MODULES)
def test_all_is_complete(name):
    """Every public name in the namespace that the package itself defines is exported (httpx's rule)."""
    module = importlib.import_module(name)
    inside = (name,) if name == "gensearcher" or not hasattr(module, "__path__") else (name, name + ".")

    def defined_here(value: object) -> bool:
        home = str(getattr(value, "__module__", ""))
        return home == inside[0] or (len(inside) == 2 and home.startswith(inside[1]))

    unexported = [attribute for attribute, value in vars(module).items()
                  if not attribute.startswith("_") and not isinstance(value, types.ModuleType)
                  and defined_here(value) and attribute not in module.__all__]
    assert unexported == [], f"public in {name} but not in __all__ (export it, or give it a leading _)"


def test_importing_the_package_is_light():
    heavy = "('torch', 'transformers', 'fastapi')"
    code = f"import gensearcher.agent, sys; print(any(m in sys.modules for m in {heavy}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.stdout.strip() == "False"
