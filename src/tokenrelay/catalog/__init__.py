"""The model catalog: which vendor serves a model name, under what upstream name, at what price.

Data lives in `models.toml` (shipped in the package) plus an optional operator file
(TOKENRELAY_CATALOG) merged on top, so prices and aliases change without a code change. Both
are validated once at load; lookups on the hot path are a single dict access.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tokenrelay.settings import Timeouts
from tokenrelay.vendors import BUILTIN_NAMES, CompatibleUpstream

# Default for `default_max_tokens`: see the header of models.toml for why 8192.
DEFAULT_MAX_TOKENS_CAP = 8192

_PRICE_FIELDS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")
_MODEL_FIELDS = frozenset(
    {
        "vendor",
        "upstream",
        "display_name",
        "context_window",
        "max_output",
        "default_max_tokens",
        "released",
        "capabilities",
        "retired",
        "aliases",
        "tiers",
        "fallbacks",
        "kind",
        "batch",
        *_PRICE_FIELDS,
    }
)
# What a model does: "chat" (Messages, Chat Completions, Responses, generateContent) or
# "embedding" (/v1/embeddings, :embedContent); the one answers no request of the other.
KINDS = ("chat", "embedding")
# The vendors' batch APIs bill half the standard rates; a model's `batch` field overrides it.
DEFAULT_BATCH_MULTIPLIER = Decimal("0.5")
_TIER_FIELDS = frozenset({"above_prompt_tokens", *_PRICE_FIELDS})
_CAPABILITY_FIELDS = ("vision", "tools", "thinking")
_ALIAS_FIELDS = frozenset({"target", "thinking"})
_GEMINI_PREFIX = "models/"
_UPSTREAM_FIELDS = frozenset({"base_url", "api_key_env", "format", "max_tokens_field"})
_DEPLOYMENT_FIELDS = frozenset({"name", "base_url", "api_key_env", "weight", "region", "models"})
_UPSTREAM_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
_DEPLOYMENT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


class CatalogError(ValueError):
    """The catalog files are invalid; the message names the file, the model and the field."""


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """One deployment of a vendor (`[[deployments.<vendor>]]`): another base URL and key for
    the same API, e.g. a second region or account. Without any, a vendor has the one endpoint
    of the registry."""

    vendor: str
    name: str  # unique within the vendor; the deployment's id is `<vendor>/<name>`
    base_url: str
    api_key_env: str
    weight: int = 1
    region: str | None = None
    models: tuple[str, ...] = ()  # catalog model ids this deployment serves (empty: all)

    @property
    def id(self) -> str:
        return f"{self.vendor}/{self.name}"


@dataclass(frozen=True, slots=True)
class PriceTier:
    """Rates (USD per 1M tokens) that apply when the prompt exceeds `above_prompt_tokens`."""

    above_prompt_tokens: int
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal


@dataclass(frozen=True, slots=True)
class Price:
    """List prices in USD per 1M tokens; `tiers` sorted by threshold, ascending."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    tiers: tuple[PriceTier, ...] = ()

    def for_prompt(self, prompt_tokens: int) -> Price:
        """The flat rates for a request whose whole prompt (input + cache) is `prompt_tokens`."""
        chosen: PriceTier | None = None
        for tier in self.tiers:
            if prompt_tokens > tier.above_prompt_tokens:
                chosen = tier
        if chosen is None:
            return replace(self, tiers=()) if self.tiers else self
        return Price(
            chosen.input,
            chosen.output,
            chosen.cache_read,
            chosen.cache_write,
            chosen.cache_write_1h,
        )


@dataclass(frozen=True, slots=True)
class Capabilities:
    vision: bool = False
    tools: bool = False
    thinking: bool = False


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    vendor: str
    upstream: str
    display_name: str
    context_window: int
    max_output: int
    default_max_tokens: int
    capabilities: Capabilities
    price: Price
    aliases: tuple[str, ...] = ()
    retired: bool = False
    created: int = 0  # unix seconds of the release date, for GET /v1/models
    # Models (ids) tried in order when no deployment of this one can take a request.
    fallbacks: tuple[str, ...] = ()
    kind: str = "chat"
    # A batch line costs its usage at the model's prices × this (rounded up to the nano-USD
    # once, with the account's price group: batch_ppm).
    batch: Decimal = DEFAULT_BATCH_MULTIPLIER

    def batch_ppm(self, multiplier_ppm: int) -> int:
        """The price-group multiplier (ppm) of a batch line: the account's × `batch`."""
        return int((multiplier_ppm * self.batch).to_integral_value(rounding="ROUND_CEILING"))

    @property
    def vendor_batch_ppm(self) -> int:
        """What the vendor's batch API bills over its list prices (ppm): `batch`."""
        return self.batch_ppm(1_000_000)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A model name resolved for one request: the entry plus what the alias asks for."""

    entry: ModelEntry
    requested: str  # the name the client sent, echoed back in responses
    thinking: bool | None = None  # None: leave the client's choice alone

    @property
    def upstream(self) -> str:
        return self.entry.upstream

    @property
    def vendor(self) -> str:
        return self.entry.vendor


class Catalog:
    def __init__(
        self,
        entries: Iterable[ModelEntry],
        index: Mapping[str, Resolved],
        upstreams: Iterable[CompatibleUpstream] = (),
        deployments: Iterable[DeploymentSpec] = (),
    ) -> None:
        self._entries = tuple(entries)
        self._index = dict(index)
        # OpenAI-compatible upstreams the operator declared: vendors of their own, no code.
        self.upstreams = tuple(upstreams)
        # `[timeouts.<vendor>]`: the fields of settings.Timeouts a vendor sets for itself.
        self.timeouts: dict[str, dict[str, float | None]] = {}
        # Deployments per vendor (`[[deployments.<vendor>]]`), in file order.
        self.deployments = tuple(deployments)

    @classmethod
    def load(cls, extra_path: str | Path | None = None) -> Catalog:
        """The packaged catalog, with the operator's file (if any) merged on top."""
        packaged = resources.files("tokenrelay.catalog").joinpath("models.toml").read_text("utf-8")
        sources = [("models.toml (packaged)", packaged)]
        if extra_path:
            path = Path(extra_path)
            try:
                sources.append((str(path), path.read_text("utf-8")))
            except OSError as exc:
                raise CatalogError(f"{path}: cannot read catalog file: {exc.strerror}") from exc
        return cls.from_sources(sources)

    @classmethod
    def from_sources(cls, sources: Iterable[tuple[str, str]]) -> Catalog:
        """Build from (label, TOML text) pairs; later sources override earlier ones."""
        models: dict[str, dict[str, Any]] = {}
        aliases: dict[str, dict[str, Any]] = {}
        origin: dict[str, str] = {}
        upstreams: dict[str, CompatibleUpstream] = {}
        timeouts: dict[str, dict[str, float | None]] = {}
        deployments: dict[str, list[tuple[str, Any]]] = {}  # a later file replaces a vendor's
        fallbacks: dict[str, tuple[str, Any]] = {}
        for label, text in sources:
            try:
                # Decimal, never float: 0.1 as float is not 0.1 and money must add up exactly.
                doc = tomllib.loads(text, parse_float=Decimal)
            except tomllib.TOMLDecodeError as exc:
                raise CatalogError(f"{label}: not valid TOML: {exc}") from exc
            for name, body in _table(label, doc.pop("upstreams", {}), "upstreams").items():
                upstreams[name] = _upstream(label, name, body)
            for name, body in _table(label, doc.pop("timeouts", {}), "timeouts").items():
                timeouts.setdefault(name, {}).update(_timeouts(label, name, body))
            for vendor, items in _table(label, doc.pop("deployments", {}), "deployments").items():
                if not isinstance(items, list):
                    raise CatalogError(
                        f"{label}: `deployments.{vendor}` must be an array of tables "
                        f"([[deployments.{vendor}]])"
                    )
                deployments[vendor] = [(label, item) for item in items]
            for model, chain in _table(label, doc.pop("fallbacks", {}), "fallbacks").items():
                fallbacks[model] = (label, chain)
            _merge(label, doc, models, aliases, origin)
        for model, (label, chain) in fallbacks.items():
            if model not in models:
                raise CatalogError(f"{label}: fallbacks: {model!r} is not a model in the catalog")
            models[model] = {**models[model], "fallbacks": chain}
        built = _build(models, aliases, origin, upstreams)
        unknown = set(timeouts) - BUILTIN_NAMES - set(upstreams)
        if unknown:
            raise CatalogError(
                f"[timeouts.{sorted(unknown)[0]}]: no such vendor (a built-in one, "
                f"{', '.join(sorted(BUILTIN_NAMES))}, or an [upstreams.<name>] table)"
            )
        specs = _deployments(deployments, built)
        catalog = Catalog(built.entries(), built._index, built.upstreams, specs)
        catalog.timeouts = timeouts
        return catalog

    def timeouts_for(self, vendor: str, defaults: Timeouts) -> Timeouts:
        """The vendor's call timeouts: `defaults` (the settings') with its table's fields."""
        override = self.timeouts.get(vendor)
        # The loader admits None only for the fields that take it (connect_s is always a number).
        return replace(defaults, **override) if override else defaults  # type: ignore[arg-type]

    def resolve(self, name: str) -> Resolved | None:
        """Exact id or alias (case-sensitive); Gemini's `models/` prefix is accepted."""
        hit = self._index.get(name)
        if hit is None and name.startswith(_GEMINI_PREFIX):
            hit = self._index.get(name[len(_GEMINI_PREFIX) :])
            if hit is not None:
                hit = replace(hit, requested=name)
        return hit

    def deployments_of(self, vendor: str) -> tuple[DeploymentSpec, ...]:
        return tuple(d for d in self.deployments if d.vendor == vendor)

    def get(self, model_id: str) -> ModelEntry | None:
        hit = self._index.get(model_id)
        return hit.entry if hit is not None and hit.entry.id == model_id else None

    def entries(self) -> tuple[ModelEntry, ...]:
        """Every model in file order (packaged first, then the operator's new ones)."""
        return self._entries

    def to_openai_list(
        self,
        emulated: set[str] | frozenset[str] = frozenset(),
        price_of: Callable[[str], Price] | None = None,
        hidden: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """GET /v1/models body; `emulated` is the set of vendors served by the emulator,
        `price_of` the price in force (the price book's; default the catalog's), `hidden` the
        models the operator took off sale."""
        return {
            "object": "list",
            "data": [
                _openai_model(e, e.vendor in emulated, price_of(e.id) if price_of else e.price)
                for e in self._entries
                if not e.retired and e.id not in hidden
            ],
        }


def format_usd(amount: Decimal) -> str:
    """Decimal string with at least two places and no float noise: 3 -> "3.00", 0.0028 kept."""
    if amount == amount.quantize(Decimal("0.01")):
        return str(amount.quantize(Decimal("0.01")))
    return format(amount.normalize(), "f")


# ---------------------------------------------------------------- merging and validation


def _merge(
    label: str,
    doc: dict[str, Any],
    models: dict[str, dict[str, Any]],
    aliases: dict[str, dict[str, Any]],
    origin: dict[str, str],
) -> None:
    unknown = set(doc) - {"models", "aliases"}
    if unknown:
        raise CatalogError(f"{label}: unknown top-level key(s) {sorted(unknown)}")
    new_models = _table(label, doc.get("models", {}), "models")
    new_aliases = _table(label, doc.get("aliases", {}), "aliases")

    # Names this source defines win over earlier sources: the operator can redirect an alias,
    # or turn a packaged alias into a model of its own.
    redefined: set[str] = set(new_aliases) | (set(new_models) - set(models))
    for body in new_models.values():
        redefined.update(body.get("aliases", []) if isinstance(body, dict) else [])
    for name in redefined:
        aliases.pop(name, None)
    for body in models.values():
        if redefined & set(body.get("aliases", [])):
            body["aliases"] = [a for a in body["aliases"] if a not in redefined]

    for model_id, body in new_models.items():
        _fields(f"{label}: model {model_id!r}", body, _MODEL_FIELDS)
        if model_id in models:
            merged = {**models[model_id], **body}
            merged["aliases"] = [*models[model_id].get("aliases", []), *body.get("aliases", [])]
            models[model_id] = merged
        else:
            models[model_id] = dict(body)
            origin[model_id] = label
    for name, body in new_aliases.items():
        if not isinstance(body, dict):
            raise CatalogError(f"{label}: alias {name!r}: must be a table with `target`")
        bad = set(body) - _ALIAS_FIELDS
        if bad:
            raise CatalogError(f"{label}: alias {name!r}: unknown field(s) {sorted(bad)}")
        aliases[name] = {**body, "_label": label}


def _fields(where: str, body: Any, allowed: Collection[str], *, hint: str = "") -> dict[str, Any]:
    """A TOML table whose keys are all in `allowed` (`hint`: what they may be)."""
    if not isinstance(body, dict):
        raise CatalogError(f"{where}: must be a table")
    bad = set(body) - set(allowed)
    if bad:
        raise CatalogError(
            f"{where}: unknown field(s) {sorted(bad)}" + (f"; {hint}" if hint else "")
        )
    return body


def _table(label: str, value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogError(f"{label}: `{key}` must be a table")
    return value


def _upstream(label: str, name: str, body: Any) -> CompatibleUpstream:
    """`[upstreams.<name>]`: an OpenAI-compatible server (Mistral, Groq, Together, vLLM, Ollama,
    ...) that the catalog's models can name as their vendor."""
    where = f"{label}: upstream {name!r}"
    body = _fields(where, body, _UPSTREAM_FIELDS)
    if not _UPSTREAM_NAME.fullmatch(name) or name in BUILTIN_NAMES:
        raise CatalogError(
            f"{where}: the name must be lower-case letters, digits and '-', and not a built-in "
            f"vendor ({', '.join(sorted(BUILTIN_NAMES))})"
        )
    if body.get("format", "openai") != "openai":
        raise CatalogError(f'{where}: `format` must be "openai" (OpenAI Chat Completions)')
    base_url = _base_url(body.get("base_url"), where)
    key_env = body.get("api_key_env")
    if not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env):
        raise CatalogError(f"{where}: `api_key_env` must name an environment variable")
    field = body.get("max_tokens_field", "max_tokens")
    if field not in ("max_tokens", "max_completion_tokens"):
        raise CatalogError(f"{where}: `max_tokens_field` is max_tokens or max_completion_tokens")
    return CompatibleUpstream(name, base_url, key_env, field)


def _timeouts(label: str, vendor: str, body: Any) -> dict[str, float | None]:
    """`[timeouts.<vendor>]`: connect_s, first_byte_s, idle_s, total_s (seconds; 0 = none)."""
    where = f"{label}: [timeouts.{vendor}]"
    body = _fields(where, body, Timeouts.FIELDS, hint=", ".join(Timeouts.FIELDS))
    out: dict[str, float | None] = {}
    for field, value in body.items():
        if isinstance(value, bool) or not isinstance(value, int | Decimal) or value < 0:
            raise CatalogError(f"{where}: `{field}` must be a number of seconds, 0 or more")
        if field == "connect_s" and not value:
            raise CatalogError(f"{where}: `connect_s` must be more than 0")
        out[field] = float(value) or None
    return out


def _base_url(value: Any, where: str) -> str:
    """The API root the adapter appends `/chat/completions` to: scheme, host and path only
    (credentials belong in the `api_key_env` variable, never in the file)."""
    what = f"{where}: `base_url` must be an http(s) URL of the API root, e.g. https://host/v1"
    if not isinstance(value, str) or any(c.isspace() for c in value):
        raise CatalogError(what)
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise CatalogError(what) from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CatalogError(what)
    if url.username is not None or url.password is not None:
        raise CatalogError(f"{where}: `base_url` must not hold credentials (use `api_key_env`)")
    if url.query or url.fragment or value.endswith(("?", "#")):
        raise CatalogError(f"{where}: `base_url` takes no query or fragment: {value!r}")
    return value


def _build(
    models: dict[str, dict[str, Any]],
    aliases: dict[str, dict[str, Any]],
    origin: dict[str, str],
    upstreams: dict[str, CompatibleUpstream],
) -> Catalog:
    # Alias name -> (target id, thinking override, where it was defined) — collected first so
    # each entry can list every name that reaches it.
    routes: dict[str, tuple[str, bool | None, str]] = {}

    def add_route(name: str, target: str, thinking: bool | None, where: str) -> None:
        if not isinstance(name, str) or not name:
            raise CatalogError(f"{where}: alias names must be non-empty strings")
        if name in models:
            raise CatalogError(f"{where}: alias {name!r} is already a model id")
        if name in routes:
            raise CatalogError(
                f"{where}: duplicate alias {name!r} (also defined by {routes[name][2]})"
            )
        routes[name] = (target, thinking, where)

    for model_id, body in models.items():
        where = f"{origin.get(model_id, 'catalog')}: model {model_id!r}"
        names = body.get("aliases", [])
        if not isinstance(names, list):
            raise CatalogError(f"{where}: `aliases` must be a list of strings")
        for name in names:
            add_route(name, model_id, None, where)
    for name, body in aliases.items():
        where = f"{body['_label']}: alias {name!r}"
        target = body.get("target")
        if not isinstance(target, str):
            raise CatalogError(f"{where}: `target` (a model id) is required")
        if target not in models:
            raise CatalogError(f"{where}: target {target!r} is not a model in the catalog")
        thinking = body.get("thinking")
        if thinking is not None and not isinstance(thinking, bool):
            raise CatalogError(f"{where}: `thinking` must be true or false")
        add_route(name, target, thinking, where)

    by_target: dict[str, list[str]] = {}
    for name, (target, _, _) in routes.items():
        by_target.setdefault(target, []).append(name)

    vendors = BUILTIN_NAMES | set(upstreams)
    entries = [
        _entry(model_id, body, tuple(by_target.get(model_id, ())), origin, vendors)
        for model_id, body in models.items()
    ]
    index: dict[str, Resolved] = {e.id: Resolved(e, e.id) for e in entries}
    by_id = {e.id: e for e in entries}
    for name, (target, thinking, _) in routes.items():
        index[name] = Resolved(by_id[target], name, thinking)
    for i, e in enumerate(entries):
        if not e.fallbacks:
            continue
        where = f"{origin.get(e.id, 'catalog')}: model {e.id!r}"
        chain: list[str] = []
        for name in e.fallbacks:
            hit = index.get(name)
            if hit is None:
                raise CatalogError(f"{where}: fallback {name!r} is not a model in the catalog")
            if hit.entry.id == e.id or hit.entry.id in chain:
                raise CatalogError(f"{where}: fallback {name!r} repeats a model of the chain")
            chain.append(hit.entry.id)
        entries[i] = replace(e, fallbacks=tuple(chain))
    if any(e.fallbacks for e in entries):
        by_id = {e.id: e for e in entries}
        for name, hit in list(index.items()):
            index[name] = replace(hit, entry=by_id[hit.entry.id])
    return Catalog(entries, index, upstreams.values())


def _deployments(
    declared: dict[str, list[tuple[str, Any]]], catalog: Catalog
) -> list[DeploymentSpec]:
    """`[[deployments.<vendor>]]` tables: base URL, key variable, optional name, weight,
    region and the models (ids or aliases) the deployment serves."""
    vendors = BUILTIN_NAMES | {u.name for u in catalog.upstreams}
    specs: list[DeploymentSpec] = []
    for vendor, items in declared.items():
        names: set[str] = set()
        for i, (label, body) in enumerate(items):
            where = f"{label}: deployment {i + 1} of {vendor!r}"
            if vendor not in vendors:
                raise CatalogError(f"{where}: unknown vendor (expected one of {sorted(vendors)})")
            body = _fields(where, body, _DEPLOYMENT_FIELDS)
            name = body.get("name", str(i + 1))
            if not isinstance(name, str) or not _DEPLOYMENT_NAME.fullmatch(name) or name in names:
                raise CatalogError(
                    f"{where}: `name` must be unique, lower-case letters, digits and '-'"
                )
            names.add(name)
            key_env = body.get("api_key_env")
            if not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env):
                raise CatalogError(f"{where}: `api_key_env` must name an environment variable")
            weight = body.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 < weight <= 1000:
                raise CatalogError(f"{where}: `weight` must be an integer in 1..1000")
            region = body.get("region")
            if region is not None and not isinstance(region, str):
                raise CatalogError(f"{where}: `region` must be a string")
            raw_models = body.get("models", [])
            if not isinstance(raw_models, list):
                raise CatalogError(f"{where}: `models` must be a list of model names")
            models: list[str] = []
            for m in raw_models:
                hit = catalog.resolve(m) if isinstance(m, str) else None
                if hit is None or hit.entry.vendor != vendor:
                    raise CatalogError(f"{where}: {m!r} is not a {vendor} model of the catalog")
                models.append(hit.entry.id)
            base_url = _base_url(body.get("base_url"), where)
            specs.append(
                DeploymentSpec(vendor, name, base_url, key_env, weight, region, tuple(models))
            )
    return specs


def _entry(
    model_id: str,
    body: dict[str, Any],
    aliases: tuple[str, ...],
    origin: dict[str, str],
    vendors: set[str] | frozenset[str],
) -> ModelEntry:
    where = f"{origin.get(model_id, 'catalog')}: model {model_id!r}"
    vendor = body.get("vendor")
    if vendor not in vendors:
        raise CatalogError(
            f"{where}: unknown vendor {vendor!r} (expected one of {sorted(vendors)}, or an "
            "[upstreams.<name>] table)"
        )
    kind = body.get("kind", "chat")
    if kind not in KINDS:
        raise CatalogError(f"{where}: `kind` must be one of {KINDS}")
    batch = _money(body.get("batch", DEFAULT_BATCH_MULTIPLIER), "batch", where)
    if batch > 1:
        raise CatalogError(f"{where}: `batch` is a multiplier of the prices, at most 1")
    context_window = _positive_int(body, "context_window", where)
    if kind == "embedding":  # an embedding writes no tokens: its output price is 0 too
        body = {"max_output": 1, "output": 0, **body}
    max_output = _positive_int(body, "max_output", where)
    default_max = body.get("default_max_tokens", min(max_output, DEFAULT_MAX_TOKENS_CAP))
    if not isinstance(default_max, int) or not 0 < default_max <= max_output:
        raise CatalogError(f"{where}: `default_max_tokens` must be an integer in 1..max_output")
    caps = body.get("capabilities", {})
    if not isinstance(caps, dict) or set(caps) - set(_CAPABILITY_FIELDS):
        raise CatalogError(f"{where}: `capabilities` takes only {_CAPABILITY_FIELDS}")
    if not all(isinstance(v, bool) for v in caps.values()):
        raise CatalogError(f"{where}: capability values must be true or false")
    upstream = body.get("upstream", model_id)
    display_name = body.get("display_name", model_id)
    retired = body.get("retired", False)
    if not isinstance(upstream, str) or not isinstance(display_name, str):
        raise CatalogError(f"{where}: `upstream` and `display_name` must be strings")
    if not isinstance(retired, bool):
        raise CatalogError(f"{where}: `retired` must be true or false")
    fallbacks = body.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise CatalogError(f"{where}: `fallbacks` must be a list of model names")
    return ModelEntry(
        id=model_id,
        vendor=str(vendor),  # one of `vendors`, checked above
        upstream=upstream,
        display_name=display_name,
        context_window=context_window,
        max_output=max_output,
        default_max_tokens=default_max,
        capabilities=Capabilities(**caps),
        price=_price(body, where),
        aliases=aliases,
        retired=retired,
        created=_created(body.get("released"), where),
        fallbacks=tuple(fallbacks),
        kind=kind,
        batch=batch,
    )


def _price(body: dict[str, Any], where: str) -> Price:
    base = _rates(body, where, None)
    raw_tiers = body.get("tiers", [])
    if not isinstance(raw_tiers, list):
        raise CatalogError(f"{where}: `tiers` must be an array of tables ([[models.ID.tiers]])")
    tiers = []
    for i, raw in enumerate(raw_tiers):
        tier_where = f"{where} tier {i + 1}"
        if not isinstance(raw, dict) or set(raw) - _TIER_FIELDS:
            raise CatalogError(f"{tier_where}: takes only {sorted(_TIER_FIELDS)}")
        threshold = _positive_int(raw, "above_prompt_tokens", tier_where)
        tiers.append(PriceTier(threshold, *_rates(raw, tier_where, base)))
    tiers.sort(key=lambda t: t.above_prompt_tokens)
    if len({t.above_prompt_tokens for t in tiers}) != len(tiers):
        raise CatalogError(f"{where}: two tiers have the same `above_prompt_tokens`")
    return Price(*base, tiers=tuple(tiers))


def _rates(
    body: dict[str, Any], where: str, base: tuple[Decimal, ...] | None
) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    missing = [f for f in ("input", "output") if f not in body]
    if missing:
        raise CatalogError(f"{where}: missing price field(s) {missing} (USD per 1M tokens)")
    values = {f: _money(body[f], f, where) for f in _PRICE_FIELDS if f in body}
    inp, out = values["input"], values["output"]
    if base is None:
        cache_read = values.get("cache_read", inp)
        cache_write = values.get("cache_write", inp)
        cache_write_1h = values.get("cache_write_1h", cache_write)
    else:
        # A tier that names only input/output scales the cache rates like the input rate,
        # which is how every vendor's long-context pricing works.
        scale = inp / base[0] if base[0] else Decimal(1)
        cache_read = values.get("cache_read", base[2] * scale)
        cache_write = values.get("cache_write", base[3] * scale)
        cache_write_1h = values.get("cache_write_1h", base[4] * scale)
    return inp, out, cache_read, cache_write, cache_write_1h


def _money(value: Any, field: str, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise CatalogError(f"{where}: `{field}` must be a number (USD per 1M tokens)")
    try:
        amount = Decimal(value)
    except ArithmeticError as exc:
        raise CatalogError(f"{where}: `{field}` = {value!r} is not a number") from exc
    if not amount.is_finite() or amount < 0:
        raise CatalogError(f"{where}: `{field}` must be a finite, non-negative number")
    return amount


def _positive_int(body: dict[str, Any], field: str, where: str) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogError(f"{where}: `{field}` must be a positive integer")
    return value


def _created(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    else:
        raise CatalogError(f"{where}: `released` must be a TOML date, e.g. 2025-09-29")
    return int(stamp.timestamp())


def _openai_model(entry: ModelEntry, emulated: bool, price: Price) -> dict[str, Any]:
    pricing: dict[str, Any] = {
        f"{field}_per_mtok": format_usd(getattr(price, field)) for field in _PRICE_FIELDS
    }
    if price.tiers:
        pricing["tiers"] = [
            {
                "above_prompt_tokens": tier.above_prompt_tokens,
                **{f"{f}_per_mtok": format_usd(getattr(tier, f)) for f in _PRICE_FIELDS},
            }
            for tier in price.tiers
        ]
    return {
        "id": entry.id,
        "object": "model",
        "created": entry.created,
        "owned_by": entry.vendor,
        "vendor": entry.vendor,
        "display_name": entry.display_name,
        "aliases": list(entry.aliases),
        "pricing": pricing,
        "context_window": entry.context_window,
        "max_output": entry.max_output,
        "capabilities": {f: getattr(entry.capabilities, f) for f in _CAPABILITY_FIELDS},
        "kind": entry.kind,
        "batch_multiplier": format(entry.batch.normalize(), "f"),
        "emulated": emulated,
    }
