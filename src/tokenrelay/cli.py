"""`tokenrelay` command line: serve, migrate, keys, models.

Every command that touches the database migrates it first, so a fresh install works with no
separate setup step. A key's plaintext is printed once, by `keys create`, and never again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import click

from tokenrelay.settings import VENDORS, get_settings

T = TypeVar("T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tokenrelay")
def main() -> None:
    """tokenrelay: one endpoint, five vendors, two client APIs."""


@main.command()
@click.option("--host", default=None, help="Bind address [default: TOKENRELAY_HOST or 127.0.0.1]")
@click.option("--port", default=None, type=int, help="Port [default: TOKENRELAY_PORT or 8080]")
@click.option(
    "--quickstart-key",
    is_flag=True,
    help="On a database with no keys yet, create one (with $5.00 of credit) and print it once.",
)
def serve(host: str | None, port: int | None, quickstart_key: bool) -> None:
    """Run the gateway."""
    from tokenrelay.server import serve as run_server  # the server pulls in the whole app

    settings = get_settings()
    if quickstart_key and not _with_store(lambda s: s.list()):
        info, plaintext = _with_store(lambda s: s.create("quickstart", Decimal("5.00"), None, None))
        click.echo(f"Quick-start API key ({info.id}, ${info.balance_usd} of credit), shown once:")
        click.echo(f"  {plaintext}")
    run_server(host or settings.host, port or settings.port)


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
    info, plaintext = _with_store(lambda s: s.create(name, credits, rpm, tpm))
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
    """Show one key as JSON."""
    info = _with_store(lambda s: s.get(key_id))
    if info is None:
        raise click.ClickException(f"no key with id {key_id!r}")
    click.echo(json.dumps(info.public(), indent=2))


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; requests with it fail from now on."""
    info = _with_store(lambda s: s.revoke(key_id))
    if info is None:
        raise click.ClickException(f"no key with id {key_id!r}")
    click.echo(f"revoked {info.id} ({info.name}) at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


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
        emulated = {v for v in VENDORS if settings.is_emulated(v)}
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
    from tokenrelay.auth import KeyStore
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
    from tokenrelay.auth import usd_to_nano

    try:
        amount = Decimal(raw.strip().lstrip("$"))
        usd_to_nano(amount)
    except (InvalidOperation, ValueError) as exc:
        raise click.BadParameter(
            "a non-negative USD amount with at most 9 decimals, e.g. 5.00",
            param_hint="--credits",
        ) from exc
    return amount


def _dash(value: object) -> str:
    return "-" if value is None else str(value)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
