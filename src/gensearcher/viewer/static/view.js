// gensearcher view: filters, zoom, the Live page. No dependencies; works from a file:// export too.
"use strict";

(function () {
  const isStatic = document.body.dataset.static === "1";

  // Filters: the server filters (submit on change); an export filters the rows it holds.
  const form = document.getElementById("filters");
  if (form) {
    if (isStatic) {
      const apply = function (event) {
        if (event) event.preventDefault();
        const f = new FormData(form);
        const lo = f.get("min_score") === "" ? -Infinity : Number(f.get("min_score"));
        const hi = f.get("max_score") === "" ? Infinity : Number(f.get("max_score"));
        const text = String(f.get("q") || "").trim().toLowerCase();
        const rows = Array.from(document.querySelectorAll("#items tr.item"));
        for (const row of rows) {
          const d = row.dataset;
          const score = d.score === "" ? null : Number(d.score);
          const ok = ["category", "difficulty", "termination"].every((k) => !f.get(k) || d[k] === f.get(k)) &&
            (score === null ? lo === -Infinity && hi === Infinity : score >= lo && score <= hi) &&
            (!text || d.text.includes(text));
          row.style.display = ok ? "" : "none";
        }
        const sort = f.get("sort");
        const key = (row) => (row.dataset.score === "" ? NaN : Number(row.dataset.score));
        const sorted = rows.slice().sort((a, b) => {
          if (sort === "score" || sort === "-score") {
            const x = key(a), y = key(b);
            if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;
            return sort === "score" ? x - y : y - x;
          }
          if (sort === "id") return a.dataset.id.localeCompare(b.dataset.id, undefined, {numeric: true});
          return rows.indexOf(a) - rows.indexOf(b);
        });
        const table = document.querySelector("#items tbody") || document.getElementById("items");
        for (const row of sorted) table.appendChild(row);
      };
      form.addEventListener("submit", apply);
      form.addEventListener("change", apply);
      form.addEventListener("input", apply);
    } else {
      form.addEventListener("change", () => form.submit());
    }
  }

  // Zoom: click an image for a full-window view; click again for actual size; Esc or a click outside closes.
  const zoom = document.getElementById("zoom");
  if (zoom) {
    const big = document.createElement("img");  // added on first use, so no empty image sits in the page
    big.alt = "zoomed image";
    document.addEventListener("click", (event) => {
      const target = event.target;
      if (target instanceof HTMLImageElement && target.classList.contains("zoomable")) {
        big.src = target.dataset.full || target.src;
        if (!big.parentNode) zoom.appendChild(big);
        zoom.classList.remove("full");
        zoom.style.display = "block";
      } else if (zoom.contains(target)) {
        if (target === big && !zoom.classList.contains("full")) zoom.classList.add("full");
        else zoom.style.display = "none";
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") zoom.style.display = "none";
    });
  }

  // Reward curve: an inline SVG polyline of reward by step.
  let drawn = "";
  function drawCurve(holder, points) {
    if (!holder || !points || !points.length || JSON.stringify(points) === drawn) return;
    drawn = JSON.stringify(points);
    const w = 640, h = 220, pad = 36;
    const steps = points.map((p) => p[0]), values = points.map((p) => p[1]);
    const x0 = Math.min(...steps), x1 = Math.max(...steps), y0 = Math.min(...values), y1 = Math.max(...values);
    const sx = (x) => pad + (x1 === x0 ? 0 : (x - x0) / (x1 - x0)) * (w - 2 * pad);
    const sy = (y) => h - pad - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (h - 2 * pad);
    const line = points.map((p) => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ");
    holder.innerHTML = '<h2>Reward by step</h2><svg id="reward-svg" width="' + w + '" height="' + h + '" role="img">' +
      '<rect x="0" y="0" width="' + w + '" height="' + h + '" fill="#fff" stroke="#d5dae0"/>' +
      '<polyline fill="none" stroke="#4a7bd0" stroke-width="2" points="' + line + '"/>' +
      '<text x="' + pad + '" y="' + (h - 8) + '" font-size="12">step ' + x0 + '</text>' +
      '<text x="' + (w - pad - 60) + '" y="' + (h - 8) + '" font-size="12">step ' + x1 + '</text>' +
      '<text x="4" y="' + (pad - 8) + '" font-size="12">' + y1.toFixed(3) + '</text>' +
      '<text x="4" y="' + (h - pad + 14) + '" font-size="12">' + y0.toFixed(3) + '</text></svg>';
  }
  const curve = document.getElementById("reward-curve");
  if (curve) drawCurve(curve, JSON.parse(curve.dataset.points || "[]"));

  // Live: ask for the items after the last one shown, once a second, and put new ones on top.
  const live = document.getElementById("live");
  if (live && !isStatic) {
    const text = (value) => document.createTextNode(value === null || value === undefined ? "" : String(value));
    const cell = (row, value) => { const td = row.insertCell(-1); td.appendChild(text(value)); return td; };
    async function poll() {
      try {
        const response = await fetch(live.dataset.since + "?pos=" + live.dataset.pos, {credentials: "same-origin"});
        if (!response.ok) throw new Error(String(response.status));
        const data = await response.json();
        const header = live.rows[0];
        for (const item of data.items) {
          const row = live.insertRow(header.rowIndex + 1);
          row.className = "item new";
          row.dataset.id = item.id;
          const link = document.createElement("a");
          link.href = item.url;
          link.appendChild(text(item.id));
          row.insertCell(-1).appendChild(link);
          cell(row, item.category);
          cell(row, item.termination);
          cell(row, item.score === null ? "" : item.score.toFixed(2)).className = "n";
          cell(row, item.prompt);
          const pics = document.createElement("div");
          pics.className = "thumbs";
          for (const src of [item.output, item.gt]) {
            if (!src) continue;
            const img = document.createElement("img");
            img.src = src;
            img.alt = "";
            pics.appendChild(img);
          }
          row.insertCell(-1).appendChild(pics);
          live.dataset.pos = String(item.pos + 1);
        }
        document.getElementById("live-count").textContent = String(data.total);
        document.getElementById("live-terminations").textContent =
          Object.entries(data.terminations).map((e) => e[0] + ": " + e[1]).join(" ");
        drawCurve(curve, data.rewards);
        document.getElementById("live-status").textContent = "updated " + new Date().toLocaleTimeString();
      } catch (error) {
        document.getElementById("live-status").textContent = "server not answering; retrying";
      }
      setTimeout(poll, 1000);
    }
    setTimeout(poll, 1000);
  }
})();
