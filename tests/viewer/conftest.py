"""Fixtures of the viewer tests: two eval-shaped run folders written by the real writers, the viewer
server on 127.0.0.1, and headless Chromium (Debian's `chromium` + `chromium-driver`) driven by Selenium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gensearcher.testing import ThreadedUvicorn
from gensearcher.viewer import RunIndex
from gensearcher.viewer.app import build_app
from gensearcher.viewer.sample_runs import write_sample_run

ITEMS = 12
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "viewer"


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """Two runs of the same items (seed 0 and seed 1: different scores, so some items flip) and the folder
    of their ground truth, kept apart from the runs as a benchmark's is."""
    root = tmp_path_factory.mktemp("viewer-runs")
    gt = root / "benchmark" / "gt"
    a = write_sample_run(root / "baseline", ITEMS, gt_dir=gt, seed=0)
    b = write_sample_run(root / "grounded", ITEMS, gt_dir=gt, seed=1)
    return {"a": a, "b": b, "gt": gt.parent, "root": root}


@pytest.fixture
def live_copy(sample, tmp_path):
    """A private copy of run A, for tests that write into it while the viewer is open."""
    target = tmp_path / "live-run"
    shutil.copytree(sample["a"], target)
    return target


class Viewer:
    def __init__(self, roots, data_roots, token=None):
        self.index = RunIndex(roots, refresh_s=0.2)
        self.http = ThreadedUvicorn(build_app(self.index, token=token, data_roots=data_roots))

    def __enter__(self):
        self.http.start()
        self.url = self.http.url
        return self

    def __exit__(self, *exc):
        self.http.stop()
        self.index.close()


@pytest.fixture(scope="session")
def viewer(sample):
    with Viewer([sample["a"], sample["b"]], [sample["gt"]]) as server:
        yield server


def _chromium() -> tuple[str, str] | None:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="session")
def browser():
    found = _chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing: .ci/run installs them")
        pytest.skip("headless Chromium missing: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--allow-file-access-from-files"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
