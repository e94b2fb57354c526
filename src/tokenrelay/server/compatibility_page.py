"""`/compatibility` (HTML) and `/compatibility.json`: the contract in catalog/compatibility.py —
the matrix tests' recorded results and the vendors' anthropic-beta policy — rendered as they
are, so the page says only what the tests observed."""

from __future__ import annotations

from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tokenrelay.catalog import compatibility as c

_STYLE = (
    "<style>td.yes{background:#dfd}td.partial{background:#ffd}td.no,td.failing{background:#fdd}"
    "td.n\\/a,td.untested{background:#eee}td,th{padding:4px 8px;vertical-align:top}"
    "table{border-collapse:collapse}td{border:1px solid #ccc}small{color:#555}"
    "summary{font-size:small;color:#555;cursor:pointer}</style>"
)


def _cell(row: dict[str, Any], column_model: str) -> str:
    """A cell's status, what was lost spelled out beneath it, what survived folded under it."""
    status = str(row["status"])
    parts = [f"<b>{escape(status)}</b>"]
    if row.get("model") and row["model"] != column_model:
        parts.append(f"<small>checked on {escape(str(row['model']))}</small>")
    if row.get("note"):
        parts.append(f"<small>{escape(str(row['note']))}</small>")
    if row.get("lost"):
        lost = "; ".join(str(x) for x in row["lost"])
        parts.append(f"<small>lost: {escape(lost)}</small>")
    if row.get("survives"):
        kept = "; ".join(str(x) for x in row["survives"])
        parts.append(f"<details><summary>survives</summary><small>{escape(kept)}</small></details>")
    return f'<td class="{escape(status)}">{"".join(parts[:1])}<br>{"<br>".join(parts[1:])}</td>'


def _head(vendors: dict[str, str]) -> str:
    return "".join(
        f"<th>{escape(v)}<br><small>{escape(m)}</small></th>" for v, m in vendors.items()
    )


def _api_sections() -> str:
    by_key = {(r["api"], r["vendor"], r["feature"]): r for r in c.matrix()}
    sections = []
    for api, api_name in c.CLIENT_APIS.items():
        rows = "".join(
            f'<tr><th title="{escape(what)}">{escape(feature)}</th>'
            + "".join(
                _cell(by_key[api, vendor, feature], model)
                for vendor, model in c.VENDOR_MODELS.items()
            )
            + "</tr>"
            for feature, what in c.FEATURES.items()
        )
        sections.append(
            f"<h2>{escape(api_name)}</h2><table><tr><th>feature</th>"
            f"{_head(c.VENDOR_MODELS)}</tr>{rows}</table>"
        )
    return "".join(sections)


def _cli_section() -> str:
    by_cli: dict[str, list[dict[str, Any]]] = {}
    for row in c.cli_matrix():
        by_cli.setdefault(row["cli"], []).append(row)
    rows = "".join(
        f"<tr><th>{escape(c.CLIS[cli])}<br><small>{escape(cells[0]['version'])}</small></th>"
        + "".join(_cell(r, c.VENDOR_MODELS[r["vendor"]]) for r in cells)
        + "</tr>"
        for cli, cells in by_cli.items()
    )
    return (
        f"<h2>Coding CLIs</h2><p>{escape(c.CLI_CHECK)}.</p><table><tr><th>CLI, version</th>"
        f"{_head(c.VENDOR_MODELS)}</tr>{rows}</table>"
    )


def _beta_section() -> str:
    doc = c.beta_document()
    vendors = list(c.VENDOR_MODELS)
    flags: dict[str, Any] = doc["flags"]  # type: ignore[assignment]
    rows = "".join(
        f'<tr><th title="{escape(row["enables"])}">{escape(flag)}</th>'
        + "".join(
            f'<td class="{escape(row["vendors"][v]["action"])}" '
            f'title="{escape(row["vendors"][v]["note"])}">{escape(row["vendors"][v]["action"])}'
            "</td>"
            for v in vendors
        )
        + "</tr>"
        for flag, row in flags.items()
    )
    unknown: dict[str, Any] = doc["unknown_flags"]  # type: ignore[assignment]
    rows += (
        "<tr><th>unknown flags</th>"
        + "".join(
            f"<td>{escape(unknown[v]['action'])}<br><small>{escape(unknown[v]['note'])}</small>"
            "</td>"
            for v in vendors
        )
        + "</tr>"
    )
    fields = escape(str(doc["unknown_fields"]))
    return (
        "<h2>anthropic-beta flags and unknown fields</h2><table><tr><th>flag</th>"
        + "".join(f"<th>{escape(v)}</th>" for v in vendors)
        + f"</tr>{rows}</table><p>Unknown body fields: {fields}.</p>"
    )


def _page() -> str:
    notes = "".join(f"<li><b>{escape(f)}</b>: {escape(w)}</li>" for f, w in c.FEATURES.items())
    recorded = escape(str(c.document()["recorded_at"]) or "never")
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Compatibility</title>"
        + _STYLE
        + "<h1>Compatibility</h1><p>Each cell is what the matrix tests observed through the "
        "official SDKs and the pinned coding CLIs against every vendor's wire (recorded "
        f'{recorded}; <a href="/compatibility.json">JSON</a>). <b>yes</b>: survives whole; '
        "<b>partial</b>: survives except what is listed as lost; <b>no</b>: refused in the "
        "client's error format; <b>n/a</b>: the client API has no such feature.</p>"
        + _api_sections()
        + _cli_section()
        + _beta_section()
        + f"<h2>Features</h2><ul>{notes}</ul></html>"
    )


async def _html(_: Request) -> Response:
    return HTMLResponse(_page())


async def _json(_: Request) -> Response:
    return JSONResponse(c.document())


def compatibility_routes() -> list[Route]:
    return [Route("/compatibility", _html), Route("/compatibility.json", _json)]
