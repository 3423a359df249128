"""The viewer over plain HTTP, written as the attacks: requests for files outside the run folders (`..`,
percent-encoded and double-encoded traversal, absolute paths, a symlink out of the folder) are refused and
leak nothing; the token is enforced on pages, JSON and files when set."""

from __future__ import annotations

import http.client
import os

import pytest

from tests.viewer.conftest import Viewer

SECRET = "TOP-SECRET-CONTENT-1234"


def raw_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """A GET with the path sent exactly as given (no client-side normalisation of `..`)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body, {k.lower(): v for k, v in response.getheaders()}


@pytest.fixture
def planted(sample, tmp_path):
    """A secret file beside the run folder, and a run folder with a symlink pointing at it."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    run = tmp_path / "run"
    import shutil

    shutil.copytree(sample["a"], run)
    os.symlink(secret, run / "images" / "link.png")
    os.symlink(tmp_path, run / "images" / "outside")
    with Viewer([run], [sample["gt"]]) as server:
        yield server, secret


ATTACKS = [
    "/files/0/../secret.txt",
    "/files/0/images/../../secret.txt",
    "/files/0/%2e%2e/secret.txt",
    "/files/0/images/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/files/0/%252e%252e/secret.txt",
    "/files/0/images%2f..%2f..%2fsecret.txt",
    "/files/0/..%5csecret.txt",
    "/files/0//etc/passwd",
    "/files/0/%2fetc%2fpasswd",
    "/files/0/images/link.png",
    "/files/0/images/outside/secret.txt",
    "/files/5/secret.txt",
    "/files/-1/secret.txt",
    "/thumbs/0/../secret.txt",
    "/thumbs/0/images/link.png",
    "/static/../runs.py",
    "/static/%2e%2e%2fruns.py",
]


@pytest.mark.parametrize("path", ATTACKS)
def test_files_outside_the_run_folders_are_refused(planted, path):
    server, _ = planted
    status, body, _ = raw_get(server.url, path)
    assert status in (400, 404), (path, status)
    assert SECRET.encode() not in body and b"root:" not in body and b"import" not in body


def test_files_inside_are_served(planted, sample):
    server, _ = planted
    status, body, headers = raw_get(server.url, "/files/0/research/results.json")
    assert status == 200 and body.lstrip().startswith(b"[")
    status, body, headers = raw_get(server.url, "/files/1/gt/0.png")  # the data root
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    status, body, headers = raw_get(server.url, "/thumbs/1/gt/0.png")
    assert status == 200 and headers["content-type"] == "image/jpeg"


def test_the_token_is_enforced_when_set(sample):
    token = "s3cret-token-value"
    with Viewer([sample["a"]], [sample["gt"]], token=token) as server:
        for path in ("/", "/runs/0/items", "/runs/0/items/1", "/api/runs/0/since", "/files/0/research/results.json",
                     "/static/view.js"):
            status, body, headers = raw_get(server.url, path)
            assert status == 401 and headers["www-authenticate"] == "Bearer" and b"Item 1" not in body
            status, _, _ = raw_get(server.url, path, {"Authorization": "Bearer wrong"})
            assert status == 401
            status, _, _ = raw_get(server.url, path, {"Cookie": "gensearcher_view=wrong"})
            assert status == 401
            status, _, _ = raw_get(server.url, path, {"Authorization": f"Bearer {token}"})
            assert status == 200
        status, _, _ = raw_get(server.url, "/?token=wrong")
        assert status == 401
        # A browser opens the printed link once: the token becomes a cookie and leaves the address.
        status, _, headers = raw_get(server.url, f"/runs/0/items?category=film&token={token}")
        assert status == 303 and headers["location"] == "/runs/0/items?category=film"
        cookie = headers["set-cookie"].split(";")[0]
        assert "httponly" in headers["set-cookie"].lower()
        status, body, _ = raw_get(server.url, "/runs/0/items?category=film", {"Cookie": cookie})
        assert status == 200 and b"Item 1:" in body and token.encode() not in body


def test_unknown_runs_and_items_are_404(viewer):
    for path in ("/runs/7/items", "/runs/0/items/nope", "/compare?a=0&b=9", "/runs/3/live"):
        status, _, _ = raw_get(viewer.url, path)
        assert status == 404, path
