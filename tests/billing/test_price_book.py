"""The versioned price book and how a request's cost is computed.

End to end, on SQLite + in-process state and on PostgreSQL + Redis: a price set through
`POST /admin/v1/prices` or `tokenrelay prices set` bills the next request without a restart;
each usage record keeps the price version it was billed at; a future `effective_from` waits.
Then the cost rules on the catalog's real prices: Gemini 2.5 Pro's long-context tier and
Anthropic's 1-hour cache writes.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from billing_support import (
    ADMIN,
    cli_env,
    create_key,
    expected_cost,
    http,
    key_summary,
    record_of,
    running_gateway,
)

from backends import BACKENDS, Backend, backend
from gateway_support import RunningGateway
from tokenrelay import ir
from tokenrelay.billing import engine as billing_engine
from tokenrelay.billing.pricebook import CATALOG_VERSION, PriceBook, PriceError, parse_price
from tokenrelay.billing.pricing import cost_nano
from tokenrelay.catalog import Catalog
from tokenrelay.store.db import create_engine, migrate_async

TOKENRELAY = Path(sys.executable).with_name("tokenrelay")


@pytest.fixture(scope="module", params=BACKENDS)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningGateway, Backend]]:
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "sqlite":
            # Without Redis a gateway learns of another process's price change (the CLI) by
            # polling the book every 10 s; poll fast so the test need not wait that long. With
            # Redis the CLI's change notice is what the test proves, so no patch there.
            mp.setattr(billing_engine, "_PRICE_POLL_S", 0.1)
        with running_gateway(request.param, tmp_path_factory) as (gateway, store):
            yield gateway, store


@pytest.fixture(scope="module")
def gw(setup: tuple[RunningGateway, Backend]) -> RunningGateway:
    return setup[0]


def set_price(url: str, **body: Any) -> dict[str, Any]:
    r = http.post(f"{url}/admin/v1/prices", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def ask(gw: RunningGateway, key: str, model: str, prompt: str = "[[words:40]] price me") -> str:
    """One non-streaming OpenAI-SDK request; returns its request id."""
    gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
    raw = gpt.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )
    raw.parse()
    return str(raw.headers["x-request-id"])


def test_admin_price_change_bills_the_next_request_and_records_keep_their_version(
    gw: RunningGateway,
) -> None:
    model = "gpt-4.1-mini"  # catalog: $0.40 in / $1.60 out per 1M
    key_id, key = create_key(gw.url, "10.00")

    first = ask(gw, key, model)
    v1 = set_price(gw.url, model=model, input="4.00", output="16.00", note="x10")
    assert v1["model"] == model and v1["input"] == "4.00" and v1["output"] == "16.00"
    second = ask(gw, key, model)
    v2 = set_price(gw.url, model=model, input=8, output="32")
    third = ask(gw, key, model)

    records = {rid: record_of(gw.url, key_id, rid) for rid in (first, second, third)}
    expected = {
        first: (CATALOG_VERSION, "0.40", "1.60"),
        second: (v1["id"], "4.00", "16.00"),
        third: (v2["id"], "8", "32"),
    }
    for rid, (version, rate_in, rate_out) in expected.items():
        record = records[rid]
        assert record["price_version"] == version, record
        assert Decimal(record["cost_usd"]) == expected_cost(record, rate_in, rate_out), record
    # Older records were not re-priced by the later versions.
    assert records[first]["price_version"] == CATALOG_VERSION
    assert records[second]["price_version"] == v1["id"]
    # The customer paid exactly the three recorded costs.
    spent = sum(Decimal(r["cost_usd"]) for r in records.values())
    assert Decimal(key_summary(gw.url, key_id)["balance_usd"]) == Decimal("10.00") - spent

    listed = http.get(f"{gw.url}/admin/v1/prices", headers=ADMIN, params={"model": model})
    assert [v["id"] for v in listed.json()["data"]] == [CATALOG_VERSION, v1["id"], v2["id"]]


def test_future_effective_from_does_not_apply_yet(gw: RunningGateway) -> None:
    model = "gpt-4.1-nano"  # catalog: $0.10 in / $0.40 out per 1M
    key_id, key = create_key(gw.url, "10.00")
    now = dt.datetime.now(dt.UTC)
    current = set_price(gw.url, model=model, input="1.00", output="2.00")
    future = set_price(
        gw.url,
        model=model,
        input="100",
        output="200",
        effective_from=(now + dt.timedelta(days=1)).isoformat(),
    )
    assert dt.datetime.fromisoformat(future["effective_from"]) > now
    record = record_of(gw.url, key_id, ask(gw, key, model))
    assert record["price_version"] == current["id"]
    assert Decimal(record["cost_usd"]) == expected_cost(record, "1.00", "2.00")
    # Both are in the book; the future one is listed, waiting for its date.
    listed = http.get(f"{gw.url}/admin/v1/prices", headers=ADMIN, params={"model": model})
    assert {current["id"], future["id"]} <= {v["id"] for v in listed.json()["data"]}


def test_cli_prices_set_reaches_the_running_gateway_without_restart(
    setup: tuple[RunningGateway, Backend], tmp_path_factory: pytest.TempPathFactory
) -> None:
    gw, store = setup
    model = "gpt-5-nano"
    key_id, key = create_key(gw.url, "10.00")
    before = record_of(gw.url, key_id, ask(gw, key, model))
    assert before["price_version"] == CATALOG_VERSION

    env = cli_env(tmp_path_factory, TOKENRELAY_DATABASE_URL=store.database_url)
    if store.redis_url:
        env["TOKENRELAY_REDIS_URL"] = store.redis_url
    done = subprocess.run(
        [str(TOKENRELAY), "prices", "set", model, "--input", "3", "--output", "7", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    version = json.loads(done.stdout)
    assert version["model"] == model and version["id"].startswith("pv_")

    # The gateway learns of the change on its own (Redis notice, or the book's poll).
    deadline = time.monotonic() + 5
    while True:
        record = record_of(gw.url, key_id, ask(gw, key, model))
        if record["price_version"] == version["id"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert record["price_version"] == version["id"]
    assert Decimal(record["cost_usd"]) == expected_cost(record, "3", "7")


def test_a_model_priced_at_zero_is_served_and_recorded_free(gw: RunningGateway) -> None:
    model = "gpt-4o-mini"
    key_id, key = create_key(gw.url, "1.00")
    free = set_price(gw.url, model=model, input=0, output=0, cache_read=0, note="promo")
    for stream in (False, True):
        gpt = openai.OpenAI(api_key=key, base_url=gw.proxy + "/v1", max_retries=0)
        if stream:
            with gpt.chat.completions.with_streaming_response.create(
                model=model, messages=[{"role": "user", "content": "hi"}], stream=True
            ) as resp:
                text = resp.read().decode()
                assert '"error"' not in text and text.rstrip().endswith("[DONE]"), text
                rid = resp.headers["x-request-id"]
        else:
            rid = ask(gw, key, model)
        record = record_of(gw.url, key_id, rid)
        assert record["price_version"] == free["id"] and record["status"] == "ok"
        assert Decimal(record["cost_usd"]) == 0
    assert Decimal(key_summary(gw.url, key_id)["balance_usd"]) == Decimal("1.00")


@pytest.mark.parametrize(("ttl", "rate"), [("1h", "6"), (None, "3.75")])
def test_one_hour_cache_writes_are_billed_at_their_own_rate(
    gw: RunningGateway, ttl: str | None, rate: str
) -> None:
    # claude-sonnet-4-6: $3 in, $15 out, $3.75 per 1M 5-minute writes, $6 per 1M 1-hour writes.
    key_id, key = create_key(gw.url, "10.00")
    claude = anthropic.Anthropic(api_key=key, base_url=gw.proxy, max_retries=0)
    cache_control: dict[str, str] = {"type": "ephemeral"}
    if ttl:
        cache_control["ttl"] = ttl
    system = [{"type": "text", "text": "Policy text. " * 200, "cache_control": cache_control}]
    raw = claude.messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system=system,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "[[words:10]] hi"}],
    )
    raw.parse()
    record = record_of(gw.url, key_id, raw.headers["x-request-id"])
    written = record["cache_write_tokens"]
    assert written > 0
    assert record["cache_write_1h_tokens"] == (written if ttl == "1h" else 0)
    nano = (
        Decimal(record["input_tokens"]) * 3
        + Decimal(record["output_tokens"]) * 15
        + Decimal(record["cache_read_tokens"]) * Decimal("0.30")
        + Decimal(written) * Decimal(rate)
    ) * 1000
    assert Decimal(record["cost_usd"]) * 10**9 == nano.to_integral_value()
    assert Decimal(raw.headers["x-tokenrelay-cost-usd"]) == Decimal(record["cost_usd"])


# --------------------------------------------------------------------------------------------
# cost rules on the catalog's real prices (billing/pricing.cost_nano)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_gemini_25_pro_prompt_above_200k_is_billed_at_the_long_context_tier(
    catalog: Catalog,
) -> None:
    entry = catalog.get("gemini-2.5-pro")
    assert entry is not None
    price = entry.price
    # models.toml: $1.25 / $10 / cache read $0.125 up to 200k prompt tokens; above, every token
    # of the request at $2.50 / $15 / $0.25 (Google's published long-context rates).
    assert [t.above_prompt_tokens for t in price.tiers] == [200_000]
    at_limit = ir.UsageTotals(input=200_000, output=1_000)
    assert cost_nano(at_limit, price) == 200_000 * 1250 + 1_000 * 10_000  # $0.26
    above = ir.UsageTotals(input=200_001, output=1_000)
    assert cost_nano(above, price) == 200_001 * 2500 + 1_000 * 15_000  # $0.5150025
    # The tier is chosen on the whole prompt: cached tokens count, and are billed at the
    # tier's cache rate.
    cached = ir.UsageTotals(input=150_000, cache_read=60_000, output=2_000)
    assert cost_nano(cached, price) == 150_000 * 2500 + 60_000 * 250 + 2_000 * 15_000
    # Output alone never moves a request into the tier.
    long_answer = ir.UsageTotals(input=1_000, output=300_000)
    assert cost_nano(long_answer, price) == 1_000 * 1250 + 300_000 * 10_000


def test_one_hour_cache_writes_use_their_own_catalog_rate(catalog: Catalog) -> None:
    entry = catalog.get("claude-sonnet-4-6")
    assert entry is not None
    price = entry.price
    assert (price.cache_write, price.cache_write_1h) == (Decimal("3.75"), Decimal(6))
    # 1000 cache-write tokens of which 400 were 1-hour writes: 600 × $3.75 + 400 × $6 per 1M.
    usage = ir.UsageTotals(input=10, output=20, cache_write=1_000, cache_write_1h=400)
    assert cost_nano(usage, price) == 10 * 3000 + 20 * 15_000 + 600 * 3750 + 400 * 6000
    only_5m = ir.UsageTotals(cache_write=1_000)
    only_1h = ir.UsageTotals(cache_write=1_000, cache_write_1h=1_000)
    assert cost_nano(only_1h, price) > cost_nano(only_5m, price)


def test_sub_nano_prices_round_once_per_request_half_up(catalog: Catalog) -> None:
    entry = catalog.get("deepseek-v4-flash")  # cache read $0.0028 per 1M: 2.8 nano-USD a token
    assert entry is not None
    assert cost_nano(ir.UsageTotals(cache_read=1), entry.price) == 3  # 2.8 -> 3
    assert cost_nano(ir.UsageTotals(cache_read=5), entry.price) == 14  # 14.0, not 5 × 3


# --------------------------------------------------------------------------------------------
# the price book itself: which version is in force when


@pytest.fixture(params=BACKENDS)
async def book(
    request: pytest.FixtureRequest, tmp_path: Path, catalog: Catalog
) -> AsyncIterator[PriceBook]:
    with backend(request.param, tmp_path) as store:
        engine = create_engine(store.database_url)
        try:
            await migrate_async(engine)
            pb = PriceBook(catalog, engine)
            await pb.load()
            yield pb
        finally:
            await engine.dispose()


async def test_versions_apply_from_their_effective_time(book: PriceBook) -> None:
    model = "gpt-4o"
    now = dt.datetime.now(dt.UTC)
    catalog_price, version = book.price_for(model)
    assert version == CATALOG_VERSION and catalog_price.input == Decimal("2.50")
    soon = await book.add(model, parse_price({"input": 1, "output": 2}), now)
    later = await book.add(
        model, parse_price({"input": 9, "output": 9}), now + dt.timedelta(hours=1)
    )
    assert book.price_for(model)[1] == soon.id
    assert book.price_for(model, now - dt.timedelta(seconds=1))[1] == CATALOG_VERSION
    price, version = book.price_for(model, now + dt.timedelta(hours=2))
    assert version == later.id and price.input == 9
    # A fresh load from the database (another process, a restart) sees the same book.
    reloaded = PriceBook(book.catalog, book.engine)
    await reloaded.load()
    assert reloaded.price_for(model, now + dt.timedelta(minutes=5))[1] == soon.id
    assert reloaded.price_for(model, now + dt.timedelta(hours=2))[1] == later.id
    # Other models are untouched.
    assert book.price_for("gpt-4o-mini")[1] == CATALOG_VERSION


async def test_price_for_an_unknown_model_is_refused(book: PriceBook) -> None:
    with pytest.raises(PriceError, match="model"):
        await book.add("no-such-model", parse_price({"input": 1, "output": 1}))
    with pytest.raises(PriceError, match="output"):
        parse_price({"input": 1})
    with pytest.raises(PriceError, match="input"):
        parse_price({"input": "-1", "output": 1})
