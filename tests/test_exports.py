"""Each public package lists its exports explicitly, sorted, and every name exists."""

import importlib

import pytest

PACKAGES = ["gensearcher", "gensearcher.agent", "gensearcher.policy", "gensearcher.tools", "gensearcher.testing",
            "gensearcher.web", "gensearcher.generate", "gensearcher.server", "gensearcher.evaluate"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name):
    module = importlib.import_module(name)
    exported = module.__all__
    assert list(exported) == sorted(exported)
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.{attribute}"


def test_importing_the_package_is_light():
    import subprocess
    import sys

    code = "import gensearcher.agent, sys; print(any(m in sys.modules for m in ('torch', 'transformers', 'fastapi')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
