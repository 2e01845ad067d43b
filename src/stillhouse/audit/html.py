"""audit.html: one self-contained offline page (inline CSS and JS, no network): a summary card per
check, then each check's findings as a table sortable by clicking a column header."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from stillhouse.data.io import write_text

HTML_FILE_NAME = "audit.html"
ROWS_SHOWN = 1000
TEXT_SHOWN = 400

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem}.meta{color:#666;margin-bottom:1.5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:.8rem}
.card{border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;padding:.6rem .8rem}
.card h3{margin:.1rem 0 .3rem;font-size:1rem}.card .n{font-size:1.6rem;font-weight:600}
.ok{border-left-color:#2e9d4a}.warning{border-left-color:#e0a100}.problem{border-left-color:#d23c3c}
.skipped{border-left-color:#aaa;color:#777}
.badge{font-size:.75rem;padding:.1rem .4rem;border-radius:4px;background:#eee;margin-left:.3rem}
.advice{color:#555;font-style:italic}.warn{background:#fff6d6;padding:.5rem .8rem;border-radius:4px}
table{border-collapse:collapse;width:100%;margin:.5rem 0 2rem;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:.3rem .4rem;text-align:left;vertical-align:top}
th{background:#f5f5f5;cursor:pointer;position:sticky;top:0;user-select:none}
th:after{content:" \\2195";color:#bbb}td.text{max-width:520px;word-break:break-word}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;font-size:13px}dt{color:#666}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, column){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var ascending = th.dataset.order !== 'asc'; th.dataset.order = ascending ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[column].dataset.v, y = b.cells[column].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? r : -r;
      });
      rows.forEach(function(row){ body.appendChild(row); });
    });
  });
});
"""


def render_html(document: dict[str, Any]) -> str:
    """The page for an audit.json ``document`` (see :mod:`stillhouse.audit.report`)."""
    task, data = document["task"], document["data"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>audit · {escape(task['name'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Data audit · {escape(task['name'])}</h1>",
        f"<div class='meta'>{escape(data['path'])}: {data['rows']} rows, labels from "
        f"{escape(str(data['label_source']))}"
        + (
            f"; test {escape(data['test']['path'])}: {data['test']['rows']} rows"
            if data["test"]
            else ""
        )
        + f" · {escape(document['created_at'])}</div>",
    ]
    for warning in document["warnings"]:
        parts.append(f"<p class='warn'>⚠ {escape(warning)}</p>")
    parts.append("<div class='cards'>")
    for name, check in document["checks"].items():
        parts.append(
            f"<a href='#{name}' style='color:inherit;text-decoration:none'>"
            f"<div class='card {check['status']}'><h3>{escape(check['title'])}"
            f"<span class='badge'>{check['status']}</span></h3>"
            f"<div class='n'>{check['count']}</div><div>{escape(check['summary'])}</div>"
            f"<div class='advice'>{escape(check['advice'])}</div></div></a>"
        )
    parts.append("</div>")
    queue = document["review_queue"]
    if queue["top"]:
        parts.append(f"<h2 id='review'>Review queue ({queue['items']} items)</h2>")
        parts.append(_table(queue["top"]))
    for name, check in document["checks"].items():
        parts.append(
            f"<h2 id='{name}'>{escape(check['title'])} <span class='badge'>{check['status']}</span></h2>"
        )
        parts.append(f"<p>{escape(check['summary'])}</p>")
        scalars = {k: v for k, v in check["metrics"].items() if not isinstance(v, dict | list)}
        if scalars:
            items = "".join(
                f"<dt>{escape(k)}</dt><dd>{escape(_cell(v))}</dd>" for k, v in scalars.items()
            )
            parts.append(f"<dl>{items}</dl>")
        findings = check["findings"]
        if findings:
            if len(findings) > ROWS_SHOWN:
                parts.append(
                    f"<p>The first {ROWS_SHOWN} of {len(findings)} findings; audit.json has all.</p>"
                )
            parts.append(_table(findings[:ROWS_SHOWN]))
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts)


def write_html(document: dict[str, Any], folder: str | Path) -> Path:
    path = Path(folder) / HTML_FILE_NAME
    write_text(path, render_html(document))
    return path


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = _cell(row.get(column))
            css = " class='text'" if column in ("text", "texts", "test_text", "train_text") else ""
            shown = value if len(value) <= TEXT_SHOWN else value[:TEXT_SHOWN] + "…"
            cells.append(
                f"<td{css} data-v='{escape(value[:200], quote=True)}'>{escape(shown)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return " | ".join(_cell(item) for item in value)
    return str(value)
