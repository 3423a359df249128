"""Every read of a run folder, behind one index.

A run folder is whatever a command wrote: a research batch (results.json + trajectories/), a `generate`
output (results.json + images/), an `eval` folder (research/, images/, results_eval.json, scores.json,
costs.json), a `run` folder (run.json, trajectory.json, image.png), one `research` (trajectory.json), or a
training run (trainer_state.json's log history; rollouts/ trajectories).

`RunIndex` joins the stage files of each folder by item id into one SQLite table in a temporary file: the
list pages are one indexed query, an item page one row plus its trajectory file, and the server's memory
does not grow with the number of items. The record files are read a line at a time where they are written
one row per line (as ours are), so even building the index holds one row at a time. A folder whose files
change (a batch still running) is re-indexed when a page asks, at most once a `refresh_s`.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from gensearcher.data import GenerationRow, JudgedRow, ResearchRow, read_rows
from gensearcher.errors import UserError

SUMMARY_KEY = "summary_type"
_SCHEMA = """
CREATE TABLE items (run INTEGER, pos INTEGER, id TEXT, category TEXT DEFAULT '', difficulty TEXT DEFAULT '',
    termination TEXT DEFAULT '', score REAL, prompt TEXT DEFAULT '', generated INTEGER DEFAULT 0, text TEXT DEFAULT '', output TEXT,
    gt TEXT, judged INTEGER DEFAULT 0, trajectory TEXT, PRIMARY KEY (run, id));
CREATE INDEX items_pos ON items (run, pos);
CREATE INDEX items_score ON items (run, score);
CREATE INDEX items_category ON items (run, category, score);
CREATE TABLE rows (run INTEGER, id TEXT, stage TEXT, body TEXT, PRIMARY KEY (run, id, stage));
CREATE VIRTUAL TABLE words USING fts5(text, run UNINDEXED, item UNINDEXED);
"""
SORTS = {"order": "pos", "score": "score IS NULL, score, pos", "-score": "score DESC, pos",
         "id": "id, pos"}


class RunInfo(BaseModel):
    """What one folder holds, for the Runs page."""

    key: int = Field(..., description="Position among the folders given (used in URLs).")
    name: str = Field(..., description="The folder's name.")
    root: str = Field(..., description="The folder, absolute.")
    stages: list[str] = Field(default_factory=list, description="research, generate, judge, train: what is there.")
    items: int = 0
    generated: int = Field(0, description="Items with an image.")
    judged: int = Field(0, description="Items with scores.")
    terminations: dict[str, int] = Field(default_factory=dict, description="Research endings and their counts.")
    scores: dict[str, Any] | None = Field(None, description="scores.json as written by `eval`.")
    costs: dict[str, Any] | None = Field(None, description="costs.json as written by `eval`.")
    rewards: list[tuple[int, float]] = Field(default_factory=list, description="A training run's reward by step.")
    problems: list[str] = Field(default_factory=list, description="Files that could not be read, and why.")


class Query(BaseModel):
    """A filtered, sorted page of one run's items."""

    category: str = ""
    difficulty: str = ""
    termination: str = ""
    min_score: float | None = None
    max_score: float | None = None
    text: str = ""
    sort: str = "order"
    page: int = 1
    per_page: int = 50


class ItemSummary(BaseModel):
    """One line of the items list."""

    run: int
    pos: int
    id: str
    category: str
    difficulty: str
    termination: str
    score: float | None
    prompt: str
    output: str | None
    gt: str | None


class Item(BaseModel):
    """Everything the stage files hold about one item (the trajectory is read separately)."""

    run: int
    id: str
    pos: int
    research: ResearchRow | None = None
    generation: GenerationRow | None = None
    judged: JudgedRow | None = None
    trajectory_path: str | None = Field(None, description="The item's trajectory file, absolute.")

    @property
    def prompt(self) -> str:
        for row in (self.research, self.generation, self.judged):
            if row is not None and row.prompt:
                return row.prompt
        return ""

    @property
    def output(self) -> str | None:
        for row in (self.judged, self.generation):
            if row is not None and row.output_path:
                return row.output_path
        return None

    @property
    def gt(self) -> str | None:
        for row in (self.judged, self.generation, self.research):
            if row is not None and row.gt_image:
                return row.gt_image
        return None


def iter_rows(path: Path) -> Iterator[Any]:
    """The rows of a record file, one at a time where the file has one row per line (ours do).

    Any other layout (pretty-printed, one object) falls back to the shared reader, which loads it whole.
    """
    try:
        with path.open(encoding="utf-8-sig") as handle:
            first = handle.readline().strip()
            if first in ("[", "") or first.startswith("{"):
                rows = []
                if first.startswith("{"):
                    rows.append(json.loads(first))
                for line in handle:
                    line = line.strip().rstrip(",")
                    if line and line != "]":
                        rows.append(json.loads(line))
                    if len(rows) >= 16:  # a few at a time: a reader of the first row reads little
                        yield from rows
                        rows = []
                yield from rows
                return
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    yield from read_rows(path)


def _rows_or_problem(path: Path, problems: list[str], *, need_id: bool = True) -> Iterator[dict[str, Any]]:
    try:
        for row in iter_rows(path):
            if isinstance(row, dict) and SUMMARY_KEY not in row and not row.get("pending") and ("id" in row or not need_id):
                yield row
    except (UserError, OSError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name}: {exc}")


def _first_row(path: Path) -> dict[str, Any]:
    try:
        return next((row for row in iter_rows(path) if isinstance(row, dict)), {})
    except (UserError, OSError, json.JSONDecodeError, ValueError):
        return {}


def read_json_file(path: Path) -> Any:
    """A small JSON file (scores, costs, run.json), or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class Layout(BaseModel):
    """Where the stage files of one folder are."""

    research: Path | None = None
    generation: Path | None = None
    judged: Path | None = None
    trajectories: Path | None = None
    single: Path | None = Field(None, description="A lone trajectory.json (research or run folder).")


def layout_paths(root: Path) -> list[Path]:
    """Every file or folder a layout may use: their stat (never their content) tells when to re-index.

    Trajectory folders count only where no results.json lists the items (a batch rewrites a trajectory
    after every round; its results.json says when an item is done)."""
    results = [root / "research" / "results.json", root / "results.json"]
    folders = [root / "research" / "trajectories", root / "trajectories", root / "rollouts"]
    listed = any(path.is_file() for path in results)
    return [*results, root / "images" / "results.json", root / "results_eval.json", root / "trajectory.json",
            *([] if listed else folders)]


def find_layout(root: Path) -> Layout:
    layout = Layout()
    for candidate in (root / "research" / "results.json", root / "results.json"):
        if candidate.is_file() and "termination" in _first_row(candidate):
            layout.research = candidate
            break
    for candidate in (root / "images" / "results.json", root / "results.json"):
        if candidate.is_file() and candidate != layout.research:
            first = _first_row(candidate)
            if "output_path" in first or "success" in first or "pending" in first:
                layout.generation = candidate
                break
    if (root / "results_eval.json").is_file():
        layout.judged = root / "results_eval.json"
    for folder in (root / "research" / "trajectories", root / "trajectories", root / "rollouts"):
        if folder.is_dir():
            layout.trajectories = folder
            break
    if (root / "trajectory.json").is_file():
        layout.single = root / "trajectory.json"
    return layout


def read_rewards(root: Path) -> list[tuple[int, float]]:
    """A training run's mean reward by step: trainer_state.json's log history (the newest checkpoint's when
    the folder has no top-level one), or rewards.jsonl lines of {step, reward}."""
    points: dict[int, float] = {}
    states = [root / "trainer_state.json"] if (root / "trainer_state.json").is_file() else sorted(
        root.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1])
        if p.parent.name.split("-")[-1].isdigit() else -1)[-1:]
    for state in states:
        logged = read_json_file(state)
        for entry in logged.get("log_history", []) if isinstance(logged, dict) else []:
            if isinstance(entry, dict) and isinstance(entry.get("step"), int) and _number(entry.get("reward")):
                points[entry["step"]] = float(entry["reward"])
    if (root / "rewards.jsonl").is_file():
        for row in _rows_or_problem(root / "rewards.jsonl", [], need_id=False):
            if isinstance(row, dict) and isinstance(row.get("step"), int) and _number(row.get("reward")):
                points[row["step"]] = float(row["reward"])
    return sorted(points.items())


def _match(text: str) -> str:
    """Free text as an FTS5 query: every word must appear (the last may be the start of a word).

    Each word is quoted, so the user's text is never read as query syntax."""
    words = re.findall(r"\w+", text.lower())
    if not words:
        return ""
    return " ".join(f'"{word}"' for word in words[:-1]) + f' "{words[-1]}"*'


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _meta(row: dict[str, Any]) -> tuple[str, str]:
    meta = row.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    return str(meta.get("category") or ""), str(meta.get("difficulty") or "")


class RunIndex:
    """The folders given to the viewer, indexed once and re-indexed when their files change.

    Thread-safe: FastAPI runs the page handlers in a thread pool. Close it to remove the index file.
    """

    def __init__(self, roots: list[Path], *, refresh_s: float = 1.0):
        if not roots:
            raise UserError("give at least one run folder")
        self.roots = [Path(root).resolve() for root in roots]
        for root in self.roots:
            if not root.is_dir():
                raise UserError(f"not a folder: {root}")
        self.refresh_s = refresh_s
        self.scratch = Path(tempfile.mkdtemp(prefix="gensearcher-view-"))
        self._db = sqlite3.connect(self.scratch / "index.sqlite", check_same_thread=False)
        # A scratch cache, rebuilt at every start: no journal, no fsync.
        self._db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -16384;"
                               + _SCHEMA)
        self._lock = threading.RLock()
        self._signatures: dict[int, tuple[Any, ...]] = {}
        self._checked: dict[int, float] = {}
        self._gap: dict[int, float] = {}
        self._info: dict[int, RunInfo] = {}
        self._layouts: dict[int, Layout] = {}
        self._facets: dict[int, dict[str, list[str]]] = {}
        for key in range(len(self.roots)):
            self._build(key)

    def close(self) -> None:
        with self._lock:
            self._db.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- building ------------------------------------------------------------------------------------

    def _signature(self, key: int) -> tuple[Any, ...]:
        root = self.roots[key]
        paths = [*layout_paths(root), root / "scores.json", root / "costs.json", root / "run.json",
                 root / "trainer_state.json", root / "rewards.jsonl", *root.glob("checkpoint-*/trainer_state.json")]
        signature: list[tuple[str, int | None, int | None]] = []
        for path in paths:
            try:
                stat = path.stat()
                signature.append((str(path), stat.st_mtime_ns, stat.st_size))
            except OSError:
                signature.append((str(path), None, None))
        return tuple(signature)

    def refresh(self, key: int | None = None) -> None:
        """Re-index the folders whose files changed (at most one look per `refresh_s` per folder)."""
        for k in range(len(self.roots)) if key is None else [key]:
            now = time.monotonic()
            if now - self._checked.get(k, 0.0) < self._gap.get(k, self.refresh_s):
                continue
            with self._lock:
                self._checked[k] = now
                if self._signature(k) != self._signatures.get(k):
                    self._build(k)
                    # A large run still going is re-read at most a tenth of the time: pages stay fast.
                    took = time.monotonic() - now
                    self._gap[k] = self.refresh_s if took < 0.1 else max(self.refresh_s, 10 * took)

    def _build(self, key: int) -> None:
        with self._lock:
            signature = self._signature(key)
            root = self.roots[key]
            layout = find_layout(root)
            problems: list[str] = []
            db = self._db
            db.execute("DELETE FROM items WHERE run = ?", (key,))
            db.execute("DELETE FROM rows WHERE run = ?", (key,))
            db.execute("DELETE FROM words WHERE run = ?", (key,))
            pos = 0
            if layout.research is not None:
                base = layout.research.parent
                for row in _rows_or_problem(layout.research, problems):
                    category, difficulty = _meta(row)
                    trajectory = row.get("trajectory")
                    db.execute(
                        "INSERT OR REPLACE INTO items (run, pos, id, category, difficulty, termination, prompt, text, gt, "
                        "trajectory) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (key, pos, str(row["id"]), category, difficulty, str(row.get("termination") or ""),
                         str(row.get("prompt") or ""),
                         f"{row.get('prompt', '')}\n{row.get('gen_prompt', '')}".lower(), row.get("gt_image"),
                         str(base / trajectory) if trajectory else None))
                    self._keep(key, row["id"], "research", row)
                    pos += 1
            elif layout.trajectories is not None or layout.single is not None:
                pos = self._add_trajectories(key, layout, problems)
            for source, column in ((layout.generation, "generation"), (layout.judged, "judged")):
                if source is not None:
                    pos = self._merge(key, source, column, pos, problems)
            db.execute("INSERT INTO words (text, run, item) SELECT text, run, id FROM items WHERE run = ?", (key,))
            db.commit()
            self._layouts[key] = layout
            self._info[key] = self._describe(key, root, layout, problems)
            self._facets[key] = {column: [value for (value,) in db.execute(
                f"SELECT DISTINCT {column} FROM items WHERE run = ? AND {column} != '' ORDER BY {column}",
                (key,)).fetchall()] for column in ("category", "difficulty", "termination")}
            self._signatures[key] = signature

    def _merge(self, key: int, source: Path, column: str, pos: int, problems: list[str]) -> int:
        for row in _rows_or_problem(source, problems):
            category, difficulty = _meta(row)
            scores = row.get("scores")
            if not isinstance(scores, dict):
                scores = {}
            score = float(scores["overall"]) if _number(scores.get("overall")) else None
            generated = 1 if row.get("success") and row.get("output_path") else 0
            text = f"{row.get('prompt') or ''}\n{row.get('used_prompt') or row.get('gen_prompt') or ''}".lower()
            judged = 1 if column == "judged" else 0
            cursor = self._db.execute(
                "UPDATE items SET judged = MAX(judged, ?), output = COALESCE(?, output), generated = MAX(generated, ?), "
                "score = COALESCE(?, score), gt = COALESCE(gt, ?), category = CASE WHEN category = '' THEN ? "
                "ELSE category END, difficulty = CASE WHEN difficulty = '' THEN ? ELSE difficulty END "
                "WHERE run = ? AND id = ?",
                (judged, row.get("output_path"), generated, score, row.get("gt_image"), category, difficulty,
                 key, str(row["id"])))
            if cursor.rowcount == 0:
                self._db.execute(
                    "INSERT INTO items (run, pos, id, category, difficulty, score, generated, prompt, text, output, gt, "
                    "judged) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key, pos, str(row["id"]), category, difficulty, score, generated, str(row.get("prompt") or ""), text,
                     row.get("output_path"), row.get("gt_image"), judged))
                pos += 1
            self._keep(key, row["id"], column, row)
        return pos

    def _keep(self, key: int, item_id: Any, stage: str, row: dict[str, Any]) -> None:
        """The full row, apart from the list columns, so a list query never reads it."""
        self._db.execute("INSERT OR REPLACE INTO rows (run, id, stage, body) VALUES (?,?,?,?)",
                         (key, str(item_id), stage, json.dumps(row, ensure_ascii=False)))

    def _add_trajectories(self, key: int, layout: Layout, problems: list[str]) -> int:
        """Items from trajectory files alone (a run folder, rollouts, a batch before its results.json)."""
        from gensearcher.viewer.trajectories import read_trajectory, research_row

        files = [layout.single] if layout.single else sorted(layout.trajectories.glob("*.json"))  # type: ignore[union-attr]
        record = read_json_file(self.roots[key] / "run.json") if layout.single else None
        run_record: dict[str, Any] | None = record if isinstance(record, dict) else None
        pos = 0
        for path in files:
            try:
                trajectory = read_trajectory(path)
            except UserError as exc:
                problems.append(str(exc))
                continue
            row = research_row(trajectory, path)
            category, difficulty = _meta(row)
            output = run_record.get("image") if run_record is not None else None
            generation = ({"id": row["id"], "prompt": row["prompt"], "used_prompt": row["gen_prompt"],
                           "output_path": output, "success": bool(output), "error": run_record.get("error")}
                          if run_record is not None else None)
            self._db.execute(
                "INSERT OR REPLACE INTO items (run, pos, id, category, difficulty, termination, prompt, text, output, "
                "gt, generated, trajectory) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, pos, str(row["id"]), category, difficulty, row["termination"], row["prompt"],
                 f"{row['prompt']}\n{row['gen_prompt']}".lower(), output, row.get("gt_image"), 1 if output else 0,
                 str(path)))
            self._keep(key, row["id"], "research", row)
            if generation is not None:
                self._keep(key, row["id"], "generation", generation)
            pos += 1
        return pos

    def _describe(self, key: int, root: Path, layout: Layout, problems: list[str]) -> RunInfo:
        db = self._db
        count, generated, judged = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(generated), 0), COALESCE(SUM(judged), 0) FROM items WHERE run = ?", (key,)).fetchone()
        terminations = dict(db.execute(
            "SELECT termination, COUNT(*) FROM items WHERE run = ? AND termination != '' GROUP BY termination "
            "ORDER BY COUNT(*) DESC", (key,)).fetchall())
        rewards = read_rewards(root)
        stages = [name for name, present in (
            ("research", layout.research or layout.trajectories or layout.single),
            ("generate", layout.generation or generated), ("judge", layout.judged), ("train", rewards)) if present]
        return RunInfo(key=key, name=root.name, root=str(root), stages=stages, items=count, generated=generated,
                       judged=judged, terminations=terminations, scores=read_json_file(root / "scores.json"),
                       costs=read_json_file(root / "costs.json"), rewards=rewards, problems=problems)

    # -- reading -------------------------------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        self.refresh()
        return [self._info[key] for key in range(len(self.roots))]

    def run(self, key: int) -> RunInfo:
        if key not in self._info:
            raise KeyError(key)
        self.refresh(key)
        return self._info[key]

    def facets(self, key: int) -> dict[str, list[str]]:
        """The categories, difficulties and terminations present in a run (for the filter menus)."""
        self.refresh(key)
        return self._facets[key]

    def query(self, key: int, query: Query) -> tuple[int, list[ItemSummary]]:
        """The total matching `query` and the items of its page."""
        self.refresh(key)
        where: list[str] = ["run = ?"]
        args: list[Any] = [key]
        for column in ("category", "difficulty", "termination"):
            value = getattr(query, column)
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if query.min_score is not None:
            where.append("score >= ?")
            args.append(query.min_score)
        if query.max_score is not None:
            where.append("score <= ?")
            args.append(query.max_score)
        words = _match(query.text)
        if words:
            where.append("(id IN (SELECT item FROM words WHERE words MATCH ? AND run = ?) OR id = ?)")
            args.extend([words, key, query.text.strip()])
        clause = " AND ".join(where)
        order = SORTS.get(query.sort, "pos")
        per_page = max(1, min(query.per_page, 500))
        offset = (max(query.page, 1) - 1) * per_page
        with self._lock:
            (total,) = self._db.execute(f"SELECT COUNT(*) FROM items WHERE {clause}", args).fetchone()
            rows = self._db.execute(
                f"SELECT run, pos, id, category, difficulty, termination, score, prompt, output, gt FROM items "
                f"WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?", [*args, per_page, offset]).fetchall()
        return total, [ItemSummary(run=r[0], pos=r[1], id=r[2], category=r[3], difficulty=r[4], termination=r[5],
                                   score=r[6], prompt=r[7], output=r[8], gt=r[9]) for r in rows]

    def since(self, key: int, pos: int, limit: int = 200) -> list[ItemSummary]:
        """Items at or after position `pos` (the Live page asks for what it has not shown yet)."""
        self.refresh(key)
        with self._lock:
            rows = self._db.execute(
                "SELECT run, pos, id, category, difficulty, termination, score, prompt, output, gt FROM items "
                "WHERE run = ? AND pos >= ? ORDER BY pos LIMIT ?", (key, pos, limit)).fetchall()
        return [ItemSummary(run=r[0], pos=r[1], id=r[2], category=r[3], difficulty=r[4], termination=r[5],
                            score=r[6], prompt=r[7], output=r[8], gt=r[9]) for r in rows]

    def item(self, key: int, item_id: str) -> Item | None:
        self.refresh(key)
        with self._lock:
            row = self._db.execute("SELECT pos, trajectory FROM items WHERE run = ? AND id = ?",
                                   (key, item_id)).fetchone()
            stages = dict(self._db.execute("SELECT stage, body FROM rows WHERE run = ? AND id = ?",
                                           (key, item_id)).fetchall())
        if row is None:
            return None
        return Item(run=key, id=item_id, pos=row[0], trajectory_path=row[1],
                    research=ResearchRow.model_validate_json(stages["research"]) if "research" in stages else None,
                    generation=GenerationRow.model_validate_json(stages["generation"]) if "generation" in stages
                    else None,
                    judged=JudgedRow.model_validate_json(stages["judged"]) if "judged" in stages else None)

    def judged_rows(self, key: int) -> Iterator[JudgedRow]:
        """Every judged row of a run, in order (for the paired comparison)."""
        self.refresh(key)
        with self._lock:
            blobs = [blob for (blob,) in self._db.execute(
                "SELECT r.body FROM items i JOIN rows r ON r.run = i.run AND r.id = i.id AND r.stage = 'judged' "
                "WHERE i.run = ? ORDER BY i.pos", (key,)).fetchall()]
        for blob in blobs:
            yield JudgedRow.model_validate_json(blob)

    def all_ids(self, key: int) -> list[str]:
        with self._lock:
            return [i for (i,) in self._db.execute("SELECT id FROM items WHERE run = ? ORDER BY pos", (key,))]
