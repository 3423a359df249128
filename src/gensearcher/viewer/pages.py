"""The pages, rendered from the index by Jinja2, for the server and for the static export alike.

A `Links` object decides what every link and image source is: the server's URLs, or relative file names
in an export. Everything else (what a page shows) is here once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, select_autoescape

from gensearcher.errors import UserError
from gensearcher.viewer.runs import Item, ItemSummary, Query, RunIndex, RunInfo
from gensearcher.viewer.trajectories import read_trajectory, rounds

DIMENSIONS = ("faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "overall")


class Links(Protocol):
    static_site: bool

    def runs(self) -> str: ...
    def items(self, run: int, **params: Any) -> str: ...
    def item(self, run: int, item_id: str) -> str: ...
    def compare(self, a: int, b: int, **params: Any) -> str: ...
    def live(self, run: int) -> str | None: ...
    def image(self, path: str | None) -> str | None: ...
    def thumb(self, path: str | None) -> str | None: ...
    def asset(self, name: str) -> str: ...


def environment() -> Environment:
    env = Environment(loader=PackageLoader("gensearcher.viewer", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["score"] = lambda v: "" if v is None else f"{v:.2f}"
    return env


def _statistic(a: list[Any], b: list[Any]) -> Any:
    """The run-level number `eval compare` uses: WiScore for WISE rows, K (reference) for KnowGen."""
    from gensearcher.evaluate.scores import knowgen_overall, wise_area, wise_tables

    if all(wise_area(i.category) for i in a + b) and not any("faithfulness" in i.scores for i in a + b):
        version = "legacy" if any("consistency" in i.scores for i in a + b) else "verified"
        return lambda items: 100 * float(wise_tables(items, version, resamples=0)["overall"]["reference"])
    return lambda items: knowgen_overall(items, strict=False)


class Pages:
    def __init__(self, index: RunIndex):
        self.index = index
        self.env = environment()
        self._compare_cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def render(self, name: str, links: Links, **context: Any) -> str:
        return self.env.get_template(name).render(links=links, runs=self.index.runs(), **context)

    def runs_page(self, links: Links) -> str:
        return self.render("runs.html", links, title="Runs")

    def items_page(self, links: Links, key: int, query: Query) -> str:
        info = self.index.run(key)
        total, items = self.index.query(key, query)
        pages = max(1, math.ceil(total / query.per_page))
        return self.render("items.html", links, title=f"Items · {info.name}", info=info, items=items, total=total,
                           query=query, pages=pages, facets=self.index.facets(key), sorts=SORT_LABELS)

    def item_page(self, links: Links, key: int, item_id: str) -> str | None:
        info = self.index.run(key)
        item = self.index.item(key, item_id)
        if item is None:
            return None
        trajectory, problem = None, None
        if item.trajectory_path and Path(item.trajectory_path).is_file():
            try:
                trajectory = read_trajectory(Path(item.trajectory_path))
            except UserError as exc:  # a damaged file is shown as such; the rest of the item still is
                problem = str(exc)
        elif item.trajectory_path:
            problem = f"trajectory file missing: {item.trajectory_path}"
        elsewhere = [(other, links.item(other.key, item_id)) for other in self.index.runs()
                     if other.key != key and self.index.item(other.key, item_id) is not None]
        return self.render("item.html", links, title=f"{item_id} · {info.name}", info=info, item=item,
                           trajectory=trajectory, trajectory_problem=problem,
                           rounds=rounds(trajectory) if trajectory else [], references=references(item, trajectory),
                           scores=scores_of(item), elsewhere=elsewhere)

    def compare_data(self, a: int, b: int) -> dict[str, Any]:
        from gensearcher.evaluate.runner import item_results
        from gensearcher.evaluate.scores import compare

        self.index.refresh(a)
        self.index.refresh(b)
        key = (a, b, self.index._signatures.get(a), self.index._signatures.get(b))
        if key not in self._compare_cache:
            items_a = item_results(list(self.index.judged_rows(a)))
            items_b = item_results(list(self.index.judged_rows(b)))  # typed rows, as `eval compare` reads them
            pairs = len(items_a) * len(items_b)
            table = compare(items_a, items_b, _statistic(items_a, items_b), resamples=2000 if pairs < 4e6 else 300)
            by_a = {str(i.id): i for i in items_a}
            table["rows"] = [(by_a[str(i.id)], i) for i in items_b if str(i.id) in by_a]
            self._compare_cache = {key: table}
        return self._compare_cache[key]

    def compare_page(self, links: Links, a: int, b: int, only: str = "", page: int = 1, per_page: int = 50) -> str:
        table = self.compare_data(a, b)
        improved, regressed = set(table.get("improved", [])), set(table.get("regressed", []))
        rows = table.get("rows", [])
        if only == "flipped":
            rows = [r for r in rows if str(r[1].id) in improved | regressed]
        elif only in ("improved", "regressed"):
            rows = [r for r in rows if str(r[1].id) in (improved if only == "improved" else regressed)]
        pages = max(1, math.ceil(len(rows) / per_page))
        shown = []
        for item_a, item_b in rows[(page - 1) * per_page: page * per_page]:
            full_a, full_b = self.index.item(a, str(item_a.id)), self.index.item(b, str(item_b.id))
            flip = "improved" if str(item_b.id) in improved else "regressed" if str(item_b.id) in regressed else ""
            shown.append({"id": str(item_a.id), "category": item_a.category, "a": item_a, "b": item_b, "flip": flip,
                          "output_a": full_a.output if full_a else None, "output_b": full_b.output if full_b else None,
                          "gt": (full_a.gt if full_a else None) or (full_b.gt if full_b else None)})
        summary = {k: v for k, v in table.items() if k != "rows"}
        return self.render("compare.html", links, title="Compare", a=self.index.run(a), b=self.index.run(b),
                           summary=summary, rows=shown, only=only, page=page, pages=pages)

    def live_page(self, links: Links, key: int) -> str:
        info = self.index.run(key)
        recent = self.index.since(key, max(0, info.items - 50))
        return self.render("live.html", links, title=f"Live · {info.name}", info=info, recent=recent)


SORT_LABELS = {"order": "file order", "score": "score, low first", "-score": "score, high first", "id": "id"}


def references(item: Item, trajectory: Any) -> list[dict[str, Any]]:
    """The answer's reference images with their notes (from the results row, else the trajectory)."""
    if item.research is not None and item.research.reference_images:
        refs = item.research.reference_images
        return [{"img_id": r.img_id, "note": r.note, "path": r.local_path, "url": r.url, "title": r.title}
                for r in refs]
    if trajectory is not None and trajectory.answer is not None:
        return [{"img_id": r.img_id, "note": r.note, "path": r.local_path, "url": r.url, "title": r.title}
                for r in trajectory.answer.reference_images]
    return []


def scores_of(item: Item) -> dict[str, Any]:
    """The judge's numbers (KnowGen dimensions first, other keys such as WISE's after) and rationale."""
    judged = item.judged
    if judged is None or judged.scores is None:
        return {}
    numbers = {k: judged.scores.number(k) for k in DIMENSIONS if judged.scores.number(k) is not None}
    for key, value in (judged.scores.model_extra or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[key] = float(value)
    return {"numbers": numbers, "rationale": judged.scores.rationale, "text_na": judged.scores.text_accuracy_na}


def summary_json(item: ItemSummary, links: Links) -> dict[str, Any]:
    """An items-list line for the Live page's script."""
    return {"pos": item.pos, "id": item.id, "category": item.category, "termination": item.termination,
            "score": item.score, "prompt": item.prompt[:200], "url": links.item(item.run, item.id),
            "output": links.thumb(item.output), "gt": links.thumb(item.gt)}


__all__ = ["Links", "Pages", "RunInfo", "environment", "summary_json"]
