"""`/compatibility` (HTML) and `/compatibility.json`: the contract in catalog/compatibility.py,
rendered as it is (the tests check that table, so the page says only what they prove)."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tokenrelay.catalog import compatibility as c


def _page() -> str:
    vendors = list(c.VENDOR_MODELS)
    head = "".join(
        f"<th>{escape(v)}<br><small>{escape(m)}</small></th>" for v, m in c.VENDOR_MODELS.items()
    )
    sections = []
    for api, api_name in c.CLIENT_APIS.items():
        rows = []
        for feature, what in c.FEATURES.items():
            cells = []
            for vendor in vendors:
                status, note = c.cell(api, vendor, feature)
                cells.append(
                    f'<td class="{escape(status)}" title="{escape(note)}">{escape(status)}</td>'
                )
            rows.append(
                f'<tr><th title="{escape(what)}">{escape(feature)}</th>{"".join(cells)}</tr>'
            )
        sections.append(
            f"<h2>{escape(api_name)}</h2><table><tr><th>feature</th>{head}</tr>{''.join(rows)}</table>"
        )
    notes = "".join(f"<li><b>{escape(f)}</b>: {escape(w)}</li>" for f, w in c.FEATURES.items())
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Compatibility</title>"
        "<style>td.yes{background:#dfd}td.partial{background:#ffd}"
        "td.n\\/a{background:#eee}td,th{padding:4px 8px}</style>"
        "<h1>Compatibility</h1><p>Generated from the table the test suite checks cell by cell "
        '(<a href="/compatibility.json">JSON</a>).</p>'
        + "".join(sections)
        + f"<h2>Features</h2><ul>{notes}</ul><p>Not yet covered by this contract: "
        + escape(", ".join(c.NOT_YET_COVERED))
        + ".</p></html>"
    )


async def _html(_: Request) -> Response:
    return HTMLResponse(_page())


async def _json(_: Request) -> Response:
    return JSONResponse(c.document())


def compatibility_routes() -> list[Route]:
    return [Route("/compatibility", _html), Route("/compatibility.json", _json)]
