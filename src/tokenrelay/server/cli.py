"""`tokenrelay` command line: serve, migrate, keys, credits, usage, prices, ledger, models.

Every command that touches the database migrates it first, so a fresh install works with no
separate setup step. A key's plaintext is printed once, by `keys create`, and never again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import click

from tokenrelay.money import MAX_AMOUNT_NANO, MoneyError, parse_nano, usd
from tokenrelay.settings import SettingsError, get_settings
from tokenrelay.vendors import registry

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokenrelay")
def main() -> None:
    """tokenrelay: Claude, GPT, Gemini, Grok and DeepSeek behind four client APIs (Anthropic
    Messages, OpenAI Chat Completions and Responses, Gemini generateContent), for the official
    SDKs and Claude Code, Codex CLI and Gemini CLI."""
    try:
        get_settings()
    except SettingsError as exc:  # one clear line at start, not a traceback
        raise BadSettings(str(exc)) from None


class BadSettings(click.ClickException):
    """A variable's value is not one the gateway accepts: a usage error (exit 2)."""

    exit_code = 2


@main.command()
@click.option("--host", default=None, help="Bind address [default: TOKENRELAY_HOST or 127.0.0.1]")
@click.option("--port", default=None, type=int, help="Port [default: TOKENRELAY_PORT or 8080]")
@click.option(
    "--quickstart-key",
    is_flag=True,
    help="On a database with no keys yet, create one (with $5.00 of credit) and print it once.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes, one per core; more than one needs Redis and PostgreSQL "
    "[default: WEB_CONCURRENCY or 1]",
)
def serve(host: str | None, port: int | None, quickstart_key: bool, workers: int | None) -> None:
    """Run the gateway."""
    from tokenrelay.server.serve import multi_worker_problem
    from tokenrelay.server.serve import serve as run_server  # the server pulls in the whole app

    settings = get_settings()
    problem = multi_worker_problem(settings, workers or settings.workers)
    if problem:
        raise click.ClickException(problem)
    bind_host, bind_port = host or settings.host, port or settings.port
    _port_free_or_exit(bind_host, bind_port)
    site = settings.public_url or f"http://{_local(bind_host)}:{bind_port}"
    # `make run` (its --quickstart-key) runs from the checkout, where `tokenrelay` is not on
    # PATH: its hints name the command as that shell can run it (the README's spelling).
    cli = "python3 -m uv run --frozen tokenrelay" if quickstart_key else "tokenrelay"
    if quickstart_key and not _with_store(lambda s: s.list()):
        info, plaintext = _with_store(lambda s: s.create("quickstart", Decimal("5.00"), None, None))
        click.echo(f"Quick-start API key ({info.id}, ${info.balance_usd} of credit), shown once:")
        click.echo(f"  {plaintext}")
    elif quickstart_key:
        click.echo(
            f"Keys exist already (the quick-start key was shown on the first run). Another: sign"
            f" up at {site}/signup, or `{cli} keys create --name me --credits 5.00`."
        )
    say = _json_line if settings.log_format == "json" else click.echo
    say(f"Site: {site}/  (docs {site}/docs, prices {site}/pricing)")
    say(f"Operator console: {site}/admin  (an operator: `{cli} admin create-user EMAIL`)")
    run_server(bind_host, bind_port, workers)


def _json_line(message: str) -> None:
    """A hint in the shape of the JSON log lines (with TOKENRELAY_LOG_FORMAT=json every line a
    log collector reads is one JSON object)."""
    import logging

    from tokenrelay.ops.log_format import JsonFormatter

    record = logging.LogRecord("tokenrelay.serve", logging.INFO, "", 0, message, (), None)
    click.echo(JsonFormatter().format(record))


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _port_free_or_exit(host: str, port: int) -> None:
    """A port in use fails at once with the way out, not with uvicorn's errno line."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({exc.strerror}): another program uses the"
                f" port. Pick another: `make run PORT={port + 1}` or TOKENRELAY_PORT={port + 1}"
            ) from None


@main.command()
def migrate() -> None:
    """Upgrade the database schema to the newest version."""
    from tokenrelay.store import migrate_sync, redacted

    url = get_settings().database_url
    _or_exit(lambda: migrate_sync(url))
    click.echo(f"database {redacted(url)} is up to date")


@main.group()
def keys() -> None:
    """Create, list, show and revoke customer API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--credits", "credits_usd", default=None, help="Starting balance in USD, e.g. 5.00")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens per minute.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_create(
    name: str, credits_usd: str | None, rpm: int | None, tpm: int | None, as_json: bool
) -> None:
    """Create a key; the key itself is shown only now."""
    credits = _parse_credits(credits_usd)
    info, plaintext = _with_actions(
        lambda a: a.create_key(_actor(), name=name, credits_usd=credits, rpm=rpm, tpm=tpm)
    )
    if as_json:
        click.echo(json.dumps({**info.public(), "key": plaintext}))
        return
    click.echo(f"Created {info.id} ({info.name}), balance ${info.balance_usd}")
    click.echo(f"key: {plaintext}")
    click.echo("Store it now: it cannot be shown again.", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """List keys (hints only, never the keys)."""
    rows = [k.public() for k in _with_store(lambda s: s.list())]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no keys yet: tokenrelay keys create --name NAME")
        return
    header = ("ID", "NAME", "KEY", "BALANCE USD", "RPM", "TPM", "STATUS")
    lines = [
        (
            r["id"],
            r["name"],
            r["key_hint"],
            r["balance_usd"],
            _dash(r["rpm"]),
            _dash(r["tpm"]),
            "revoked" if r["revoked_at"] else "active",
        )
        for r in rows
    ]
    _table([header, *lines])


@keys.command("show")
@click.argument("key_id")
def keys_show(key_id: str) -> None:
    """Show one key as JSON, with its spend and request count."""

    async def op(billing: Any, store: Any) -> dict[str, Any] | None:
        info = await store.get(key_id)
        if info is None:
            return None
        summary = await billing.key_summary(key_id) or {}
        return {**info.public(), **{k: summary[k] for k in ("spent_usd", "requests")}}

    body = _with_billing(op)
    if body is None:
        raise click.ClickException(f"no key with id {key_id!r}")
    click.echo(json.dumps(body, indent=2))


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; requests with it fail from now on."""
    from tokenrelay.admin.actions import NotFound

    async def op(actions: Any) -> Any:
        try:
            return await actions.revoke_key(_actor(), key_id)
        except NotFound:
            raise click.ClickException(f"no key with id {key_id!r}") from None

    info = _with_actions(op)
    click.echo(f"revoked {info.id} ({info.name}) at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@main.group()
def credits() -> None:
    """Add credits to a key (or, with a negative amount, adjust its balance)."""


@credits.command("add")
@click.argument("key_id")
@click.argument("amount")
@click.option("--note", default=None, help="Why, for the ledger.")
@click.option(
    "--idempotency-key",
    default=None,
    help="Run again with the same key (and amount, note), the credit is applied only once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def credits_add(
    key_id: str, amount: str, note: str | None, idempotency_key: str | None, as_json: bool
) -> None:
    """Add AMOUNT USD (e.g. 10.00) to KEY_ID; a negative amount (after --) is an adjustment."""
    from tokenrelay.billing.ledger import BalanceOverflow, IdempotencyConflict

    try:
        nano = parse_nano(amount.strip().replace("$", ""), signed=True, allow_zero=False)
    except MoneyError as exc:
        raise click.BadParameter(
            f"{exc}; a non-zero USD amount up to {usd(MAX_AMOUNT_NANO)} with at most 9 decimals",
            param_hint="AMOUNT",
        ) from exc
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        raise click.BadParameter("1 to 200 characters", param_hint="--idempotency-key")

    from tokenrelay.admin.actions import NotFound

    async def op(actions: Any) -> int | None:
        try:
            return int(await actions.credit_key(_actor(), key_id, nano, note, idempotency_key))
        except NotFound:
            return None
        except (BalanceOverflow, IdempotencyConflict) as exc:  # not a database problem
            raise click.ClickException(str(exc)) from exc

    balance = _with_actions(op, billing=True)
    if balance is None:
        raise click.ClickException(f"no key with id {key_id!r}")
    if as_json:
        click.echo(json.dumps({"id": key_id, "amount_usd": usd(nano), "balance_usd": usd(balance)}))
        return
    sign = "+" if nano > 0 else "-"
    click.echo(f"{key_id}: {sign}${usd(abs(nano))}, balance ${usd(balance)}")


@main.group()
def accounts() -> None:
    """Disable or enable a customer account, adjust its credit (with a reason)."""


def _set_disabled(disabled: bool, doc: str) -> Callable[[str, str], None]:
    def command(account_id: str, reason: str) -> None:
        _account_action(lambda a: a.set_account_disabled(_actor(), account_id, disabled, reason))
        click.echo(f"{'disabled' if disabled else 'enabled'} {account_id}")

    command.__doc__ = doc
    return command


for _name, _disabled, _doc in (
    ("disable", True, "Refuse every key of ACCOUNT_ID at once (every replica), end sign-ins."),
    ("enable", False, "Let ACCOUNT_ID's keys and sign-ins work again."),
):
    accounts.command(_name)(
        click.argument("account_id")(
            click.option("--reason", required=True, help="Why, for the audit log.")(
                _set_disabled(_disabled, _doc)
            )
        )
    )


@accounts.command("credit")
@click.argument("account_id")
@click.argument("amount")
@click.option("--reason", required=True, help="Why, for the ledger and the audit log.")
def accounts_credit(account_id: str, amount: str, reason: str) -> None:
    """Add AMOUNT USD to ACCOUNT_ID (negative, after --, to debit), as the console does."""
    try:
        nano = parse_nano(amount.strip().lstrip("$"), signed=True, allow_zero=False)
    except MoneyError as exc:
        raise click.BadParameter(str(exc), param_hint="AMOUNT") from exc
    balance = _account_action(
        lambda a: a.adjust_credit(_actor(), account_id, nano, reason), billing=True
    )
    click.echo(f"{account_id}: balance ${usd(int(balance))}")


def _account_action(op: Callable[[Any], Awaitable[T]], *, billing: bool = False) -> T:
    """An operator action on an account: its errors as one line each."""
    from tokenrelay.admin.actions import ActionError, NotFound

    async def checked(actions: Any) -> T:
        try:
            return await op(actions)
        except NotFound:
            raise click.ClickException("no such account") from None
        except ActionError as exc:
            raise click.ClickException(str(exc)) from None

    return _with_actions(checked, billing=billing)


@main.command()
@click.option("--key", "key_id", default=None, help="Only this key id.")
@click.option("--since", default=None, help="ISO 8601 time, e.g. 2026-01-01T00:00:00Z")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def usage(key_id: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """Usage records, newest first."""
    from tokenrelay.billing.pricebook import PriceError, parse_time

    try:
        since_at = parse_time(since, "--since")
    except PriceError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    rows = _with_billing(lambda b, _s: b.usage(key_id, since_at, limit))
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no usage yet")
        return
    header = ("STARTED", "REQUEST", "KEY", "MODEL", "STATUS", "IN", "OUT", "SOURCE", "COST USD")
    lines = [
        (
            r["started_at"][:19],
            r["request_id"],
            r["key_id"],
            r["model"],
            r["status"],
            str(r["input_tokens"]),
            str(r["output_tokens"]),
            r["usage_source"],
            r["cost_usd"],
        )
        for r in rows
    ]
    _table([header, *lines])


@main.group()
def admin() -> None:
    """Operator console users (the /admin pages; the admin API keeps its token)."""


@admin.command("create-user")
@click.argument("email")
@click.password_option(
    "--password",
    envvar="TOKENRELAY_ADMIN_PASSWORD",
    help="Prompted for (never on the command line in production); or TOKENRELAY_ADMIN_PASSWORD.",
)
@click.option(
    "--role",
    type=click.Choice(["owner", "support", "viewer"]),
    default="owner",
    show_default=True,
    help="owner: everything; support: reads and credit adjustments up to $50; viewer: reads.",
)
def admin_create_user(email: str, password: str, role: str) -> None:
    """Create an operator who signs in to /admin with EMAIL and a password."""
    from tokenrelay.admin.operators import OperatorStore
    from tokenrelay.customers.accounts import SignupError

    async def op(store: Any) -> str:
        try:
            return await OperatorStore(store.engine).create(email, password, role)
        except SignupError as exc:
            raise click.ClickException(str(exc)) from None

    user_id = _with_store(op)
    click.echo(f"created operator {user_id} ({email.strip().lower()}, {role})")


@main.group()
def ledger() -> None:
    """Check the ledger."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Balances = sum of the ledger; exactly one debit per usage record. Exit 1 if not."""
    problems = _with_billing(lambda b, _s: b.verify())
    if problems:
        for line in problems:
            click.echo(line)
        click.echo(f"ledger: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("ledger ok: every balance is the sum of its ledger, every request billed once")


@main.group()
def prices() -> None:
    """The versioned price book (USD per 1M tokens)."""


@prices.command("list")
@click.option("--model", default=None, help="Only this model id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prices_list(model: str | None, as_json: bool) -> None:
    """Every price version: the catalog's ("catalog") and the operator's, by effective date."""
    rows = _with_billing(lambda b, _s: _versions(b, model))
    if as_json:
        click.echo(json.dumps(rows))
        return
    header = ("MODEL", "VERSION", "EFFECTIVE FROM", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE")
    lines = [
        (
            r["model"],
            r["id"],
            "-" if r["id"] == "catalog" else r["effective_from"][:19],
            r["input"],
            r["output"],
            r["cache_read"],
            r["cache_write"],
        )
        for r in rows
    ]
    _table([header, *lines])


@prices.command("set")
@click.argument("model")
@click.option("--input", "input_", required=True, help="USD per 1M input tokens.")
@click.option("--output", required=True, help="USD per 1M output tokens.")
@click.option("--cache-read", default=None, help="USD per 1M cache-read tokens [default: kept].")
@click.option(
    "--cache-write", default=None, help="USD per 1M 5-minute cache writes [default: kept]."
)
@click.option(
    "--cache-write-1h", default=None, help="USD per 1M 1-hour cache writes [default: kept]."
)
@click.option(
    "--tier",
    "tiers",
    multiple=True,
    metavar="above=N,input=X,output=Y[,cache_read=..]",
    help="A long-context tier: these rates when the prompt exceeds N tokens. Repeatable; "
    "replaces the model's tiers [default: its tiers in force are kept].",
)
@click.option("--no-tiers", is_flag=True, help="Drop the model's tiers: flat rates only.")
@click.option("--effective-from", default=None, help="ISO 8601 time [default: now].")
@click.option("--note", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prices_set(
    model: str,
    input_: str,
    output: str,
    cache_read: str | None,
    cache_write: str | None,
    cache_write_1h: str | None,
    tiers: tuple[str, ...],
    no_tiers: bool,
    effective_from: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Add a price version for MODEL; running gateways pick it up without a restart."""
    from tokenrelay.billing.pricebook import PriceError, parse_price, parse_time, tier_json

    if tiers and no_tiers:
        raise click.BadParameter("--tier and --no-tiers contradict each other")
    body: dict[str, Any] = {"input": input_, "output": output, "cache_read": cache_read}
    body |= {"cache_write": cache_write, "cache_write_1h": cache_write_1h}
    new_tiers = [_parse_tier(raw) for raw in tiers]
    try:
        start = parse_time(effective_from, "--effective-from")
    except PriceError as exc:
        raise click.BadParameter(str(exc)) from exc

    async def op(actions: Any) -> dict[str, Any]:
        billing = actions.billing
        try:
            current = billing.price_for(model)[0] if billing.prices.catalog.get(model) else None
            # Unset cache rates and tiers keep the values in force today: a price change
            # for short prompts must not silently drop the long-context tier.
            if tiers or no_tiers:
                body["tiers"] = new_tiers
            elif current is not None:
                body["tiers"] = [tier_json(t) for t in current.tiers]
            version = await actions.set_price(
                _actor(), model, parse_price(body, current), start, note
            )
        except PriceError as exc:  # not a database problem: say it plainly
            raise click.ClickException(str(exc)) from exc
        return dict(version.public())

    row = _with_actions(op, billing=True)
    if as_json:
        click.echo(json.dumps(row))
        return
    above = "".join(
        f", above {t['above_prompt_tokens']} tokens: {t['input']}/{t['output']}"
        for t in row["tiers"]
    )
    click.echo(
        f"{row['id']}: {model} input ${row['input']} output ${row['output']} per 1M{above}, "
        f"effective from {row['effective_from']}"
    )


def _parse_tier(raw: str) -> dict[str, Any]:
    """`above=200000,input=2.5,output=15[,cache_read=..]` as a tier of the admin API's form."""
    tier: dict[str, Any] = {}
    for part in raw.split(","):
        name, sep, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise click.BadParameter(f"{part!r}: expected name=value", param_hint="--tier")
        tier["above_prompt_tokens" if name == "above" else name] = value.strip()
    above = tier.get("above_prompt_tokens", "")
    if not (above.isascii() and above.isdigit() and len(above) <= 10):
        raise click.BadParameter("above=N (prompt tokens) is required", param_hint="--tier")
    tier["above_prompt_tokens"] = int(above)
    return tier


async def _versions(billing: Any, model: str | None) -> list[dict[str, Any]]:
    return [v.public() for v in billing.prices.versions(model)]


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the GET /v1/models body.")
def models(as_json: bool) -> None:
    """List the model catalog with prices (USD per 1M tokens)."""
    from tokenrelay.catalog import Catalog, CatalogError, format_usd

    settings = get_settings()
    try:
        catalog = Catalog.load(settings.catalog_path)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        vendors = registry(catalog.upstreams).values()
        emulated = {v.name for v in vendors if settings.is_emulated(v.api_key())}
        click.echo(json.dumps(catalog.to_openai_list(emulated), indent=2))
        return
    header = ("MODEL", "VENDOR", "CONTEXT", "INPUT", "OUTPUT", "CACHE READ", "ALIASES")
    lines = [
        (
            e.id + (" (retired)" if e.retired else ""),
            e.vendor,
            f"{e.context_window:,}",
            format_usd(e.price.input),
            format_usd(e.price.output),
            format_usd(e.price.cache_read),
            ", ".join(e.aliases),
        )
        for e in catalog.entries()
    ]
    _table([header, *lines])


# ---------------------------------------------------------------- helpers


def _with_store(op: Callable[[Any], Awaitable[T]]) -> T:
    """Run `op(KeyStore)` against the configured database, migrated first."""
    from tokenrelay.customers.keys import KeyStore
    from tokenrelay.store import create_engine, migrate_async

    settings = get_settings()

    async def run() -> T:
        engine = create_engine(settings.database_url)
        try:
            await migrate_async(engine)
            return await op(KeyStore(engine, prefix=settings.key_prefix))
        finally:
            await engine.dispose()

    return _or_exit(lambda: asyncio.run(run()))


def _actor() -> Any:
    """The audit log's name for whoever runs the CLI."""
    import getpass

    from tokenrelay.admin.actions import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}")


def _with_actions(op: Callable[[Any], Awaitable[T]], *, billing: bool = False) -> T:
    """Run `op(OperatorActions)`: with the billing engine when the action moves money or
    prices (credits then reach running gateways' live balances through Redis)."""
    from tokenrelay.admin.actions import OperatorActions

    if billing:
        return _with_billing(lambda b, keys: op(OperatorActions(b.engine, keys, b)))
    return _with_store(lambda keys: op(OperatorActions(keys.engine, keys)))


def _with_billing(op: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run `op(BillingEngine, KeyStore)` against the configured database (and Redis, if set:
    credits then reach the live balances of running gateways)."""
    from tokenrelay.billing.engine import BillingEngine
    from tokenrelay.catalog import Catalog, CatalogError
    from tokenrelay.customers.keys import KeyStore
    from tokenrelay.store import create_engine, migrate_async

    settings = get_settings()
    try:
        catalog = Catalog.load(settings.catalog_path)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from exc

    async def run() -> T:
        engine = create_engine(settings.database_url)
        billing = BillingEngine(settings, engine, catalog)
        try:
            await migrate_async(engine)
            await billing.start(serving=False)
            return await op(billing, KeyStore(engine, prefix=settings.key_prefix))
        finally:
            await billing.close()
            await engine.dispose()

    return _or_exit(lambda: asyncio.run(run()))


def _or_exit(fn: Callable[[], T]) -> T:
    """Database trouble becomes one readable line (with the URL's password hidden)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tokenrelay.store import redacted

    try:
        return fn()
    except (SQLAlchemyError, OSError, ValueError) as exc:
        url = redacted(get_settings().database_url)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise click.ClickException(f"database {url}: {reason}") from exc


def _parse_credits(raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        # Bounded like the admin API: a larger amount overflowed the BIGINT balance column.
        nano = parse_nano(raw.strip().lstrip("$"))
    except MoneyError as exc:
        raise click.BadParameter(
            f"{exc}; a non-negative USD amount up to {usd(MAX_AMOUNT_NANO)} with at most 9 "
            "decimals, e.g. 5.00",
            param_hint="--credits",
        ) from exc
    return Decimal(nano).scaleb(-9)


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


@main.group()
def receipts() -> None:
    """Check the signed usage receipts responses carry (x-tokenrelay-receipt)."""


@receipts.command("verify")
@click.argument("receipt")
@click.option(
    "--url",
    default=None,
    help="The gateway whose key and prices to check against [default: TOKENRELAY_HOST:PORT]",
)
def verify_receipt(receipt: str, url: str | None) -> None:
    """Check RECEIPT's signature with the gateway's published key (the one it names: keys in use
    before a rotation stay published), and recompute its charge from the published prices
    (GET /api/proxy/v1/models)."""
    import urllib.request

    from tokenrelay.billing.receipts import (
        WELL_KNOWN_PATH,
        InvalidReceipt,
        price_from_listing,
        published_key,
        recompute_charge,
        verify,
    )

    s = get_settings()
    base = (url or f"http://{s.host}:{s.port}").rstrip("/")

    def get(path: str) -> Any:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return json.loads(r.read())

    if not base.startswith(("http://", "https://")):
        raise click.ClickException("--url must be an http(s) URL")
    try:
        claims = verify(receipt, published_key(receipt, get(WELL_KNOWN_PATH)))
    except InvalidReceipt as exc:
        raise click.ClickException(f"INVALID: {exc}") from None
    click.echo(f"signature: valid (key {claims.get('kid')})")
    click.echo(json.dumps(claims, indent=2, sort_keys=True))
    listed = {m["id"]: m for m in get("/api/proxy/v1/models")["data"]}
    model = listed.get(claims["model"])
    if model is None:
        raise click.ClickException(f"model {claims['model']} is not in the published price list")
    if claims["price_version"] != "catalog":
        click.echo(
            f"note: billed at price version {claims['price_version']}; the list shows the "
            "catalog's current prices"
        )
    expected = recompute_charge(claims, price_from_listing(model["pricing"]))
    if expected != claims["charged_nano"]:
        raise click.ClickException(
            f"charge MISMATCH: receipt says ${claims['charged_usd']}, the published prices give "
            f"${usd(expected)}"
        )
    click.echo(f"charge: ${claims['charged_usd']} matches the published prices")
