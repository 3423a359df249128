"""The viewer's web app: the pages, their JSON for the Live page, and the files of the run folders.

`build_app(index, token=...)`: with a token, every request needs it as `Authorization: Bearer TOKEN`, or
as the cookie the app sets when a browser first opens a link with `?token=TOKEN` (the token is then
dropped from the address by a redirect, so it stays out of history and of the pages' links).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from gensearcher.viewer.files import FileRoots, Refused, thumbnail
from gensearcher.viewer.pages import Pages, summary_json
from gensearcher.viewer.runs import Query, RunIndex

COOKIE = "gensearcher_view"
STATIC = Path(__file__).parent / "static"


class ServerLinks:
    """Links of the running server."""

    static_site = False

    def __init__(self, files: FileRoots):
        self.files = files

    def runs(self) -> str:
        return "/"

    def items(self, run: int, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        return f"/runs/{run}/items" + (f"?{urlencode(query)}" if query else "")

    def item(self, run: int, item_id: str) -> str:
        return f"/runs/{run}/items/{_quote(item_id)}"

    def compare(self, a: int, b: int, **params: Any) -> str:
        query = {"a": a, "b": b, **{k: v for k, v in params.items() if v not in (None, "")}}
        return f"/compare?{urlencode(query)}"

    def live(self, run: int) -> str | None:
        return f"/runs/{run}/live"

    def image(self, path: str | None) -> str | None:
        return self.files.url("/files", path)

    def thumb(self, path: str | None) -> str | None:
        return self.files.url("/thumbs", path)

    def asset(self, name: str) -> str:
        return f"/static/{name}"


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def build_app(index: RunIndex, *, token: str | None = None, data_roots: list[Path] | None = None) -> Any:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

    files = FileRoots([*index.roots, *(data_roots or [])])
    links = ServerLinks(files)
    pages = Pages(index)
    thumbs = index.scratch / "thumbs"
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def authorise(request: Request, call_next: Any) -> Response:
        if token is None:
            return await call_next(request)
        offered = request.query_params.get("token")
        if offered is not None and hmac.compare_digest(offered.encode(), token.encode()):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        header = request.headers.get("authorization", "")
        candidates = [header[7:] if header.lower().startswith("bearer ") else "", request.cookies.get(COOKIE, "")]
        if any(c and hmac.compare_digest(c.encode(), token.encode()) for c in candidates):
            return await call_next(request)
        return JSONResponse({"error": "a token is required: open the link printed by `gensearcher view`"},
                            status_code=401, headers={"www-authenticate": "Bearer"})

    def run_or_404(key: int) -> None:
        if not 0 <= key < len(index.roots):
            raise HTTPException(404, "no such run")

    @app.get("/", response_class=HTMLResponse)
    def runs_page() -> str:
        return pages.runs_page(links)

    @app.get("/runs/{key}/items", response_class=HTMLResponse)
    def items_page(key: int, category: str = "", difficulty: str = "", termination: str = "",
                   min_score: str = "", max_score: str = "", q: str = "", sort: str = "order", page: int = 1) -> str:
        run_or_404(key)
        query = Query(category=category, difficulty=difficulty, termination=termination, text=q, sort=sort,
                      page=page, min_score=_float(min_score), max_score=_float(max_score))
        return pages.items_page(links, key, query)

    @app.get("/runs/{key}/items/{item_id}", response_class=HTMLResponse)
    def item_page(key: int, item_id: str) -> str:
        run_or_404(key)
        page = pages.item_page(links, key, item_id)
        if page is None:
            raise HTTPException(404, "no such item")
        return page

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(a: int, b: int, only: str = "", page: int = 1) -> str:
        run_or_404(a)
        run_or_404(b)
        return pages.compare_page(links, a, b, only=only, page=max(page, 1))

    @app.get("/runs/{key}/live", response_class=HTMLResponse)
    def live_page(key: int) -> str:
        run_or_404(key)
        return pages.live_page(links, key)

    @app.get("/api/runs/{key}/since")
    def since(key: int, pos: int = 0) -> dict[str, Any]:
        run_or_404(key)
        info = index.run(key)
        return {"items": [summary_json(item, links) for item in index.since(key, pos)], "total": info.items,
                "terminations": info.terminations, "rewards": info.rewards}

    @app.get("/api/runs")
    def runs_json() -> list[dict[str, Any]]:
        return [info.model_dump(exclude={"scores", "costs"}) for info in index.runs()]

    @app.get("/files/{key}/{relative:path}")
    def file(key: int, relative: str) -> FileResponse:
        try:
            return FileResponse(files.open(key, relative))
        except Refused:
            raise HTTPException(404, "not found") from None

    @app.get("/thumbs/{key}/{relative:path}")
    def thumb(key: int, relative: str) -> FileResponse:
        try:
            source = files.open(key, relative)
        except Refused:
            raise HTTPException(404, "not found") from None
        try:
            return FileResponse(thumbnail(source, thumbs), media_type="image/jpeg")
        except OSError:
            raise HTTPException(415, "not an image") from None

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in {p.name for p in STATIC.iterdir()}:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name)

    return app


def _float(value: str) -> float | None:
    try:
        return float(value) if value.strip() else None
    except ValueError:
        return None
