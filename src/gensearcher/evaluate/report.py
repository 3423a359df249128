"""A self-contained HTML report: one file, with small thumbnails in a folder beside it.

Summary tables (reference and strict), a bar chart per category, and per item the prompt, the generated
image beside the ground truth and the reference images, the gen_prompt, the scores and the judge's
rationale; filterable by category and by score.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any

from gensearcher._files import write_atomic

THUMB = 256


def _thumb(path: Any, folder: Path) -> str | None:
    """A JPEG thumbnail of `path` in `folder`; its name relative to the report, or None."""
    from PIL import Image

    if not path or not Path(str(path)).is_file():
        return None
    name = hashlib.sha256(str(path).encode()).hexdigest()[:16] + ".jpg"
    target = folder / name
    if not target.exists():
        try:
            with Image.open(str(path)) as image:
                image = image.convert("RGB")
                image.thumbnail((THUMB, THUMB))
                folder.mkdir(parents=True, exist_ok=True)
                image.save(target, format="JPEG", quality=85)
        except OSError:
            return None
    return f"{folder.name}/{name}"


def _table(title: str, rows: dict[str, dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns, "K (strict)", "judged / items", "95% CI (K)"])
    body = []
    for name, row in rows.items():
        reference, strict = row.get("reference", {}), row.get("strict", {})
        cells = "".join(f"<td>{reference.get(c, '')}</td>" for c in columns)
        ci = row.get("ci95_reference_k") or row.get("ci95_reference") or ["", ""]
        strict_value = strict.get("k_score", strict) if isinstance(strict, dict) else strict
        body.append(f"<tr><th>{html.escape(name)}</th>{cells}<td>{strict_value}</td>"
                    f"<td>{row.get('judged', '')} / {row.get('items', '')}</td><td>{ci[0]} - {ci[1]}</td></tr>")
    return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{''.join(body)}</table>"


def _chart(rows: dict[str, dict[str, Any]], key: str, scale: float) -> str:
    bars = []
    for index, (name, row) in enumerate(rows.items()):
        reference = row.get("reference", {})
        value = reference.get(key, 0) if isinstance(reference, dict) else reference
        width = max(0.0, min(1.0, float(value) / scale)) * 300
        bars.append(f'<g transform="translate(0,{index * 22})"><text x="0" y="15">{html.escape(name)}</text>'
                    f'<rect x="190" y="3" width="{width:.1f}" height="16" fill="#4a7bd0"/>'
                    f'<text x="{195 + width:.1f}" y="15">{value}</text></g>')
    return f'<svg width="560" height="{22 * len(rows) + 4}" role="img">{"".join(bars)}</svg>'


def write_report(out: Path, tables: dict[str, Any], rows: list[dict[str, Any]], *, title: str) -> Path:
    thumbs = out / "report_files"
    knowgen = tables.get("benchmark") == "knowgen"
    parts = [f"<h1>gensearcher evaluation: {html.escape(title)}</h1>"]
    if knowgen:
        columns = ["faithfulness", "visual_correctness", "text_accuracy", "aesthetics", "k_score"]
        parts.append(_table("Overall and groups (0-100)", {"overall": tables["overall"], **tables["groups"]}, columns))
        parts.append(_table("Categories", tables["categories"], columns))
        parts.append("<h2>K by category</h2>" + _chart(tables["categories"], "k_score", 100))
        if tables.get("difficulties"):
            parts.append(_table("Difficulties", tables["difficulties"], columns))
        score_key, scale = "overall", 1.0
    else:
        parts.append(_table("Overall and areas", {"overall": tables["overall"], **tables["areas"]}, []))
        parts.append("<h2>Score by area</h2>" + _chart(tables["areas"], "reference", 1.0))
        score_key, scale = "overall", 1.0
    if tables.get("unknown_categories"):
        parts.append(f"<p>Unknown categories (not in any group): {html.escape(json.dumps(tables['unknown_categories']))}</p>")
    categories = sorted({str((row.get("meta") or {}).get("category", "")) for row in rows})
    parts.append('<h2>Items</h2><p>Category <select id="cat"><option value="">all</option>'
                 + "".join(f"<option>{html.escape(c)}</option>" for c in categories if c)
                 + '</select> score from <input id="lo" type="number" step="0.05" value="0" style="width:5em"> to '
                 '<input id="hi" type="number" step="0.05" value="1" style="width:5em"></p>')
    for row in rows:
        scores = row.get("scores") if isinstance(row.get("scores"), dict) else None
        value = float(scores.get(score_key, 0)) / scale if scores else 0.0
        category = str((row.get("meta") or {}).get("category", ""))
        images = [("generated", _thumb(row.get("output_path"), thumbs)), ("ground truth", _thumb(row.get("gt_image"), thumbs))]
        images += [(f"reference {i + 1}", _thumb(path, thumbs)) for i, path in enumerate(row.get("used_images") or [])]
        figures = "".join(f'<figure><img src="{src}" alt="{label}"><figcaption>{label}</figcaption></figure>'
                          for label, src in images if src)
        details = ("".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in scores.items() if k != "rationale")
                   if scores else f"<li>not scored: {html.escape(str(row.get('error')))}</li>")
        parts.append(
            f'<section class="item" data-category="{html.escape(category)}" data-score="{value:.4f}">'
            f"<h3>{html.escape(str(row.get('id')))} <small>{html.escape(category)}</small></h3>"
            f"<p><b>Prompt:</b> {html.escape(str(row.get('prompt', '')))}</p>"
            f"<p><b>gen_prompt:</b> {html.escape(str(row.get('used_prompt') or row.get('gen_prompt') or ''))}</p>"
            f"<div class='figs'>{figures}</div><ul>{details}</ul>"
            f"<p class='why'>{html.escape(str((scores or {}).get('rationale', '')))}</p></section>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{text-align:left}} .figs{{display:flex;gap:8px}}
figure{{margin:0}} img{{max-width:{THUMB}px;max-height:{THUMB}px}} .item{{border-top:1px solid #ddd;padding:8px 0}}
.why{{color:#444;font-size:90%}} svg text{{font-size:12px}}</style></head><body>{''.join(parts)}
<script>
function apply(){{const c=document.getElementById('cat').value,lo=+document.getElementById('lo').value,hi=+document.getElementById('hi').value;
for(const s of document.querySelectorAll('.item')){{const v=+s.dataset.score;s.style.display=((!c||s.dataset.category===c)&&v>=lo&&v<=hi)?'':'none';}}}}
for(const id of ['cat','lo','hi'])document.getElementById(id).addEventListener('input',apply);
</script></body></html>"""
    path = out / "report.html"
    write_atomic(path, page.encode("utf-8"))
    return path
