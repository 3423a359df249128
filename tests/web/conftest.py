import pytest

from gensearcher.config import FetchConfig
from gensearcher.testing.local_web import LocalWeb
from gensearcher.web import Fetcher


@pytest.fixture(scope="module")
def local_web():
    with LocalWeb(slow_s=0.3) as web:
        yield web


@pytest.fixture
async def fetcher():
    """Loopback 127.0.0.1 is allowed explicitly; every other private address stays refused."""
    fetcher = Fetcher(FetchConfig(allowed_networks=["127.0.0.1/32"], timeout_s=5, max_retries=2))
    yield fetcher
    await fetcher.aclose()
