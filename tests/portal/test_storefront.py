"""The storefront as a visitor and a customer meet it, over real HTTP: every model with its
price (a signed-in customer's own group price), the client APIs and vendor status, the
operator's brand on every page (nothing says "tokenrelay"), security headers, HTML error
pages for browsers and JSON for APIs, and a key allow-list checked against the catalog."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from portal_support import Browser, form_error
from sqlalchemy import create_engine, insert, update

from gateway_support import RunningGateway, served
from tokenrelay.catalog import Catalog
from tokenrelay.portal.web import dollars
from tokenrelay.store.tables import accounts, price_groups

HTML = {"accept": "text/html,application/xhtml+xml"}
PAGES = ["/", "/pricing", "/docs", "/login", "/signup", "/no-such-page"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("storefront")
    brand = tmp / "brand.toml"
    brand.write_text('site_name = "Acme AI"\nsupport_email = "help@acme.example"\n')
    yield from served(
        tmp,
        session_secret="storefront-test-secret-01",
        public_url="https://ai.acme.example",
        site_name="Overridden by the brand file",
        brand_file=str(brand),
        brand_color="#aa3300",
        terms_url="https://acme.example/terms",
        signup_credit_usd=Decimal("1.00"),
    )


def test_landing_and_pricing_list_every_model_with_its_price(gw: RunningGateway) -> None:
    catalog = Catalog.load(None).to_openai_list()["data"]
    for path in ("/", "/pricing"):
        page = httpx.get(gw.url + path).text
        table = page.split('data-testid="prices"')[1]
        for m in catalog:
            row = table.split(f"<code>{m['id']}</code>")[1].split("</tr>")[0]
            assert f"${m['pricing']['input_per_mtok']}" in row, m["id"]
            assert f"${m['pricing']['output_per_mtok']}" in row, m["id"]
        assert "data-vendor-filter" in page and "data-price-search" in page
        # Emulated vendors say so; no deployment or upstream detail.
        assert "Demo: answered by the built-in emulator" in page
    landing = httpx.get(gw.url + "/").text
    for api in ("Anthropic Messages", "OpenAI Chat Completions", "OpenAI Responses", "Gemini"):
        assert api in landing
    for cli in ("Claude Code", "Codex CLI", "Gemini CLI"):
        assert cli in landing
    assert "https://ai.acme.example/api/proxy/v1" in landing  # the quick start's base URL


def test_a_signed_in_customer_sees_their_price_group(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("group@example.com")
    engine = create_engine(gw.settings.database_url)
    with engine.begin() as conn:
        conn.execute(insert(price_groups).values(name="retail", multiplier_ppm=1_500_000))
        conn.execute(
            update(accounts)
            .where(accounts.c.email == "group@example.com")
            .values(price_group="retail")
        )
    engine.dispose()
    page = b.http.get("/pricing").text
    row = page.split("<code>gpt-4o</code>")[1].split("</tr>")[0]
    assert "$3.75" in row and "$15.00" in row  # gpt-4o: $2.50 / $10.00 list, × 1.5
    assert "your account's prices" in page
    public = httpx.get(gw.url + "/pricing").text.split("<code>gpt-4o</code>")[1]
    assert "$2.50" in public.split("</tr>")[0]
    b.close()


def test_the_brand_is_on_every_page_and_tokenrelay_on_none(gw: RunningGateway) -> None:
    for path in PAGES:
        page = httpx.get(gw.url + path, headers=HTML).text
        assert "Acme AI" in page and "help@acme.example" in page, path
        assert "https://acme.example/terms" in page, path
        # Header names (x-tokenrelay-cost-usd) are the API's; no other mention.
        assert not re.search(r"(?<!x-)tokenrelay(?!_api_key)", page, re.I), path
    assert httpx.get(gw.url + "/brand.css").text == ":root{--accent:#aa3300}\n"


def test_security_headers_deny_framing_and_inline_script(gw: RunningGateway) -> None:
    for path in [*PAGES, "/favicon.ico", "/admin/v1/keys"]:
        r = httpx.get(gw.url + path, headers=HTML)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert r.headers["strict-transport-security"].startswith("max-age=")  # https public URL
        if r.headers.get("content-type", "").startswith("text/html"):
            assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), path  # no inline script
            assert " style=" not in r.text and "<style" not in r.text, path


def test_browsers_get_html_error_pages_and_apis_keep_json(gw: RunningGateway) -> None:
    missing = httpx.get(gw.url + "/no-such-page", headers=HTML)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "Page not found" in missing.text and "Acme AI" in missing.text
    wrong = httpx.delete(gw.url + "/pricing", headers=HTML)
    assert wrong.status_code == 405 and "Method not allowed" in wrong.text
    api = httpx.get(gw.url + "/api/proxy/v1/nope", headers=HTML)
    assert api.status_code == 404 and api.json()["error"]
    plain = httpx.get(gw.url + "/no-such-page")
    assert plain.status_code == 404 and plain.json()["error"]["type"] == "not_found_error"
    icon = httpx.get(gw.url + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"


def test_a_key_allow_list_is_checked_against_the_catalog(gw: RunningGateway) -> None:
    b = Browser(gw.url)
    b.sign_up("allow@example.com")
    r = b.post("/dashboard/keys", {"name": "typo", "models": "gpt-40"}, page="/dashboard")
    assert r.status_code == 400
    assert form_error(r) is not None and "gpt-40 (did you mean gpt-4o?)" in form_error(r)
    key = b.create_key("ok", models="gpt-4o, claude-sonnet-4-6")
    page = b.http.get("/dashboard").text
    assert key not in page  # shown once
    r = b.post("/dashboard/keys", {"name": "snips"}, page="/dashboard")
    new = re.search(r'data-testid="new-key">([^<]+)<', r.text)
    assert new is not None
    # Ready snippets with the key and the public base URL filled in.
    assert f"export ANTHROPIC_API_KEY={new.group(1)}" in r.text
    assert "export OPENAI_BASE_URL=https://ai.acme.example/api/proxy/v1" in r.text
    b.close()


def test_brand_file_errors_stop_the_start(tmp_path: Path) -> None:
    from tokenrelay.portal.brand import BrandError, load_brand
    from tokenrelay.settings import Settings

    bad = tmp_path / "brand.toml"
    bad.write_text('brand_colour = "#fff"\n')
    with pytest.raises(BrandError, match="unknown key"):
        load_brand(Settings(brand_file=str(bad)))  # type: ignore[call-arg]


def test_the_dashboard_shows_what_prompt_caching_saved(gw: RunningGateway) -> None:
    import csv
    import io

    import openai

    b = Browser(gw.url)
    b.sign_up("cache@example.com")
    key = b.create_key("cached")
    client = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    history = [
        {"role": "system", "content": "You are a patient teacher. " * 200},
        {"role": "user", "content": "Explain recursion. [[cache]]"},  # the emulator: a hit
    ]
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o", messages=history, max_tokens=20)
    rows = list(csv.DictReader(io.StringIO(b.http.get("/dashboard/usage.csv").text)))
    assert len(rows) == 2
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["started_at"]) for r in rows
    )
    read = sum(int(r["cache_read_tokens"]) for r in rows)
    prompt = sum(int(r["input_tokens"]) + int(r["cache_read_tokens"]) for r in rows)
    assert read > 0
    saved_nano = read * 1_250  # gpt-4o: $2.50 input - $1.25 cached, per 1M tokens
    page = b.http.get("/dashboard?days=7").text
    table = page.split('data-testid="cache-model"')[1].split("</table>")[0]
    row = table.split(">gpt-4o<")[1].split("</tr>")[0]
    assert f"{read * 100 / prompt:.1f}%" in row
    assert dollars(saved_nano) in row
    spent = sum(int(Decimal(r["cost_usd"]) * 10**9) for r in rows)
    assert 'data-label="Requests">2<' in row and f'data-label="Spend">{dollars(spent)}<' in row
    assert 'aria-current="page">7 days' in page and "Spent, last 7 days" in page
    assert "cached" in page.split('data-testid="cache-key"')[1].split("</table>")[0]
    b.close()


def test_the_reset_link_uses_the_public_url_not_the_host_header(
    gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    b = Browser(gw.url)
    b.sign_up("reset-host@example.com")
    b.http.cookies.clear()
    token = b.csrf("/reset")
    with caplog.at_level("WARNING", logger="tokenrelay.portal"):
        forged = b.http.post(
            "/reset",
            data={"email": "reset-host@example.com", "csrf": token},
            headers={"host": "attacker.example"},
        )
        assert forged.status_code == 421  # a public URL is set: another Host is refused
        r = b.http.post("/reset", data={"email": "reset-host@example.com", "csrf": token})
    assert r.status_code == 200
    links = [m for m in caplog.messages if "/reset/confirm?t=" in m]
    assert links and all("https://ai.acme.example/reset/confirm?t=" in m for m in links)
    assert not any("attacker.example" in m for m in caplog.messages)
    b.close()


def test_help_landing_and_readme_name_the_same_apis_and_clis(gw: RunningGateway) -> None:
    import subprocess
    import sys

    from tokenrelay.portal.storefront import CLIENT_APIS, CODING_CLIS

    help_text = subprocess.run(
        [str(Path(sys.executable).parent / "tokenrelay"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    help_text = " ".join(help_text.split())
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    landing = httpx.get(gw.url + "/").text
    for name in [api for api, _, _ in CLIENT_APIS] + list(CODING_CLIS):
        words = name.replace("OpenAI ", "").split()[0]
        assert words in help_text, name
        assert name.split()[0] in readme and name in landing, name
