"""The model catalog: packaged data, resolution, operator overrides, validation errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tokenrelay.catalog import Catalog, CatalogError, format_usd
from tokenrelay.settings import Settings, Timeouts
from tokenrelay.vendors import BUILTIN_NAMES as VENDORS
from tokenrelay.vendors import registry

SEED_NAMES = [
    "claude-sonnet-4-6",
    "gpt-4o",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "grok-2",
    "deepseek-chat",
]
LINEUP = [
    "claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-5", "claude-sonnet-4-5",
    "claude-haiku-4-5", "claude-opus-4-1",
    "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini",
    "o3-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1",
    "gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-pro-preview",
    "gemini-3-flash-preview",
    "grok-4.3", "grok-4.20-reasoning", "grok-4.20-non-reasoning", "grok-3-mini",
    "deepseek-v4-flash", "deepseek-v4-pro",
]  # fmt: skip

MINIMAL_MODEL = """
[models."acme-1"]
vendor = "openai"
context_window = 1000
max_output = 100
input = 1
output = 2
"""

UPSTREAM = """
[upstreams.acme-llm]
base_url = "https://api.acme-llm.example/v1"
api_key_env = "ACME_LLM_API_KEY"
"""
UPSTREAM_MODEL = MINIMAL_MODEL.replace('"openai"', '"acme-llm"')
# An `[upstreams.<name>]` table: each mistake names the upstream (or model) and the field.
UPSTREAM_ERRORS = [
    (UPSTREAM + "timeout = 5\n", "upstream 'acme-llm': unknown field(s) ['timeout']"),
    (UPSTREAM.replace("acme-llm]", "openai]"), "not a built-in vendor"),
    (UPSTREAM.replace("acme-llm]", "deepseek]"), "not a built-in vendor"),
    (UPSTREAM.replace("acme-llm]", '"Acme_LLM"]'), "lower-case letters, digits and '-'"),
    (UPSTREAM.replace("https://api.acme-llm.example/v1", "api.acme.example/v1"), "http(s)"),
    (UPSTREAM.replace("https://api.acme-llm.example", "ftp://acme.example"), "http(s)"),
    (UPSTREAM.replace("api.acme-llm.example", ""), "http(s) URL of the API root"),
    (UPSTREAM.replace("/v1", "/v1?key=1"), "takes no query or fragment"),
    (UPSTREAM.replace("https://", "https://u:secret@"), "must not hold credentials"),
    (UPSTREAM.replace('"ACME_LLM_API_KEY"', '"acme key"'), "`api_key_env` must name"),
    (UPSTREAM.replace('api_key_env = "ACME_LLM_API_KEY"', ""), "`api_key_env` must name"),
    (UPSTREAM.replace("https://api.acme-llm.example/v1", ""), "`base_url` must be"),
    (UPSTREAM + 'format = "anthropic"\n', '`format` must be "openai"'),
    (UPSTREAM + 'max_tokens_field = "max_new_tokens"\n', "`max_tokens_field` is"),
    ("upstreams = 3\n", "`upstreams` must be a table"),
    ("[upstreams]\nacme-llm = 1\n", "upstream 'acme-llm': must be a table"),
    (UPSTREAM_MODEL, "unknown vendor 'acme-llm'"),  # the model, not its upstream
    (UPSTREAM + UPSTREAM_MODEL.replace('"acme-llm"', '"acme"'), "[upstreams.<name>]"),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def load_text(text: str, label: str = "operator.toml") -> Catalog:
    from importlib import resources

    packaged = resources.files("tokenrelay.catalog").joinpath("models.toml").read_text("utf-8")
    return Catalog.from_sources([("packaged", packaged), (label, text)])


def test_packaged_catalog_is_complete(catalog: Catalog) -> None:
    ids = [e.id for e in catalog.entries()]
    assert len(ids) == len(set(ids))
    assert set(LINEUP) <= set(ids)
    for entry in catalog.entries():
        assert entry.vendor in VENDORS, entry.id
        # An embedding model writes nothing: its output price is 0.
        assert entry.price.input > 0, entry.id
        assert (entry.price.output > 0) == (entry.kind == "chat"), entry.id
        assert entry.batch == Decimal("0.5"), entry.id  # the vendors' batch discount
        assert 0 <= entry.price.cache_read <= entry.price.input, entry.id
        assert 0 < entry.default_max_tokens <= entry.max_output <= entry.context_window
        assert entry.default_max_tokens == min(entry.max_output, 8192)
        assert entry.created > 0, entry.id
        assert not entry.retired


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seed_names_resolve_to_active_models(catalog: Catalog, name: str) -> None:
    resolved = catalog.resolve(name)
    assert resolved is not None
    assert resolved.requested == name
    assert not resolved.entry.retired
    assert catalog.resolve(resolved.entry.id) is not None


def test_retired_names_go_to_current_successors(catalog: Catalog) -> None:
    grok2 = catalog.resolve("grok-2")
    assert grok2 is not None and grok2.entry.id == "grok-4.20-non-reasoning"
    assert grok2.upstream == "grok-4.20-non-reasoning"
    for reasoning in ("grok-4", "grok-4-0709", "grok-4-fast-reasoning", "grok-code-fast-1"):
        hit = catalog.resolve(reasoning)
        assert hit is not None and hit.entry.id == "grok-4.3", reasoning
    chat = catalog.resolve("deepseek-chat")
    assert chat is not None and chat.entry.id == "deepseek-v4-flash" and chat.thinking is False
    reasoner = catalog.resolve("deepseek-reasoner")
    assert reasoner is not None and reasoner.entry.id == "deepseek-v4-flash"
    assert reasoner.thinking is True
    assert catalog.resolve("deepseek-v4-flash").thinking is None  # type: ignore[union-attr]


def test_resolution_rules(catalog: Catalog) -> None:
    dated = catalog.resolve("claude-sonnet-4-5-20250929")
    assert dated is not None and dated.entry.id == "claude-sonnet-4-5"
    assert dated.requested == "claude-sonnet-4-5-20250929"
    prefixed = catalog.resolve("models/gemini-2.5-flash")
    assert prefixed is not None and prefixed.entry.id == "gemini-2.5-flash"
    assert prefixed.requested == "models/gemini-2.5-flash"
    assert catalog.resolve("GPT-4o") is None  # case-sensitive, like the vendors
    assert catalog.resolve("no-such-model") is None
    assert catalog.resolve("models/no-such-model") is None
    assert "claude-sonnet-4-5-20250929" in catalog.get("claude-sonnet-4-5").aliases  # type: ignore[union-attr]


def test_tiered_prices(catalog: Catalog) -> None:
    pro = catalog.get("gemini-2.5-pro")
    assert pro is not None
    assert pro.price.for_prompt(200_000).input == Decimal("1.25")
    long = pro.price.for_prompt(200_001)
    assert (long.input, long.output, long.cache_read) == (2.5, 15, Decimal("0.25"))
    assert long.tiers == ()
    sonnet45 = catalog.get("claude-sonnet-4-5")
    assert sonnet45 is not None
    # A tier that names only input/output scales cache rates with input (2x here).
    assert sonnet45.price.for_prompt(300_000).cache_write == Decimal("7.50")


def test_prices_are_exact_decimals(catalog: Catalog) -> None:
    flash = catalog.get("deepseek-v4-flash")
    assert flash is not None
    assert flash.price.cache_read == Decimal("0.0028")
    sonnet = catalog.get("claude-sonnet-4-6")
    assert sonnet is not None
    assert (sonnet.price.input, sonnet.price.cache_write, sonnet.price.cache_write_1h) == (
        Decimal(3),
        Decimal("3.75"),
        Decimal(6),
    )


def test_openai_list_shape(catalog: Catalog) -> None:
    body = catalog.to_openai_list({"xai"})
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    sonnet = by_id["claude-sonnet-4-6"]
    assert sonnet["object"] == "model" and sonnet["owned_by"] == "anthropic"
    assert sonnet["pricing"]["input_per_mtok"] == "3.00"
    assert sonnet["pricing"]["cache_write_1h_per_mtok"] == "6.00"
    assert sonnet["emulated"] is False
    assert by_id["grok-4.3"]["emulated"] is True
    assert "grok-2" in by_id["grok-4.20-non-reasoning"]["aliases"]
    assert by_id["gemini-2.5-pro"]["pricing"]["tiers"][0]["above_prompt_tokens"] == 200_000
    assert by_id["deepseek-v4-flash"]["pricing"]["cache_read_per_mtok"] == "0.0028"
    assert "deepseek-reasoner" in by_id["deepseek-v4-flash"]["aliases"]
    assert "grok-2" not in by_id  # aliases are not listed as models


def test_format_usd() -> None:
    assert format_usd(Decimal(3)) == "3.00"
    assert format_usd(Decimal("0.125")) == "0.125"
    assert format_usd(Decimal("0.0028")) == "0.0028"
    assert format_usd(Decimal("5.000000000")) == "5.00"


def test_operator_file_adds_model_overrides_price_and_aliases(tmp_path: Path) -> None:
    extra = tmp_path / "operator.toml"
    extra.write_text(
        MINIMAL_MODEL
        + """
aliases = ["acme"]

[models."gpt-4o"]
input = 2.00
aliases = ["my-4o"]

[aliases."deepseek-chat"]  # redirect a packaged alias
target = "deepseek-v4-pro"
thinking = false

[aliases."fast"]
target = "claude-haiku-4-5"

[models."grok-3-mini"]
retired = true
"""
    )
    catalog = Catalog.load(extra)
    acme = catalog.resolve("acme")
    assert acme is not None and acme.entry.id == "acme-1" and acme.upstream == "acme-1"
    assert acme.entry.default_max_tokens == 100
    assert acme.entry.price.cache_read == 1  # defaults to input
    gpt4o = catalog.get("gpt-4o")
    assert gpt4o is not None
    assert gpt4o.price.input == Decimal("2.00") and gpt4o.price.output == 10  # rest kept
    assert catalog.resolve("my-4o").entry.id == "gpt-4o"  # type: ignore[union-attr]
    assert catalog.resolve("gpt-4o-2024-08-06").entry.id == "gpt-4o"  # type: ignore[union-attr]
    assert catalog.resolve("deepseek-chat").entry.id == "deepseek-v4-pro"  # type: ignore[union-attr]
    assert catalog.resolve("fast").entry.id == "claude-haiku-4-5"  # type: ignore[union-attr]
    assert catalog.entries()[-1].id == "acme-1"
    listed = {m["id"] for m in catalog.to_openai_list()["data"]}
    assert "grok-3-mini" not in listed and "acme-1" in listed
    assert catalog.resolve("grok-3-mini") is not None  # retired is hidden, not broken


def test_operator_alias_in_a_model_list_takes_over_a_packaged_alias() -> None:
    catalog = load_text(MINIMAL_MODEL + 'aliases = ["gpt-4o-2024-08-06"]\n')
    assert catalog.resolve("gpt-4o-2024-08-06").entry.id == "acme-1"  # type: ignore[union-attr]
    assert "gpt-4o-2024-08-06" not in catalog.get("gpt-4o").aliases  # type: ignore[union-attr]


def test_operator_can_turn_an_alias_into_a_model() -> None:
    catalog = load_text(MINIMAL_MODEL.replace("acme-1", "grok-2"))
    hit = catalog.resolve("grok-2")
    assert hit is not None and hit.entry.id == "grok-2" and hit.vendor == "openai"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL_MODEL.replace('"openai"', '"acme"'), "unknown vendor 'acme'"),
        (MINIMAL_MODEL.replace("output = 2", ""), "missing price field(s) ['output']"),
        (MINIMAL_MODEL.replace("input = 1", 'input = "x"'), "`input` = 'x' is not a number"),
        (MINIMAL_MODEL.replace("input = 1", "input = -1"), "non-negative"),
        (MINIMAL_MODEL.replace("max_output = 100", ""), "`max_output` must be a positive"),
        (MINIMAL_MODEL + "ouptut = 3\n", "unknown field(s) ['ouptut']"),
        (MINIMAL_MODEL + 'aliases = ["a", "a"]\n', "duplicate alias 'a'"),
        (MINIMAL_MODEL + 'aliases = ["gpt-5"]\n', "alias 'gpt-5' is already a model id"),
        ('[aliases."x"]\ntarget = "nope"\n', "target 'nope' is not a model"),
        ('[aliases."x"]\nthinking = true\n', "`target` (a model id) is required"),
        ('[aliases."x"]\ntarget = "gpt-5"\nthinking = "yes"\n', "`thinking` must be true"),
        (MINIMAL_MODEL + "[[models.acme-1.tiers]]\ninput = 2\noutput = 3\n", "above_prompt"),
        ("[models\n", "not valid TOML"),
        ("[pricing]\n", "unknown top-level key(s) ['pricing']"),
        (MINIMAL_MODEL + "capabilities = { vision = 1 }\n", "capability values"),
        (MINIMAL_MODEL + "released = 2025\n", "`released` must be a TOML date"),
        *UPSTREAM_ERRORS,
    ],
)
def test_invalid_operator_files_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as err:
        load_text(text)
    assert message in str(err.value)
    assert str(err.value).startswith("operator.toml:")


def test_duplicate_alias_across_two_operator_models() -> None:
    text = MINIMAL_MODEL + 'aliases = ["same"]\n' + MINIMAL_MODEL.replace("acme-1", "acme-2")
    with pytest.raises(CatalogError, match="duplicate alias 'same'"):
        load_text(text + 'aliases = ["same"]\n')


def test_missing_operator_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog file"):
        Catalog.load(tmp_path / "missing.toml")


# ------------------------------------------------------------------ operator-declared upstreams


def test_an_upstream_table_makes_a_vendor() -> None:
    catalog = load_text(
        UPSTREAM + 'format = "openai"\nmax_tokens_field = "max_completion_tokens"\n'
        "[upstreams.local]\n"
        'base_url = "http://127.0.0.1:8000/v1"\napi_key_env = "LOCAL_KEY"\n'
        + UPSTREAM_MODEL
        + 'upstream = "acme/chat-1"\n'
    )
    (acme, local) = catalog.upstreams
    assert (acme.name, acme.base_url, acme.key_env) == (
        "acme-llm",
        "https://api.acme-llm.example/v1",
        "ACME_LLM_API_KEY",
    )
    assert acme.max_tokens_field == "max_completion_tokens"
    assert local.max_tokens_field == "max_tokens"  # the default
    hit = catalog.resolve("acme-1")
    assert hit is not None and hit.vendor == "acme-llm" and hit.upstream == "acme/chat-1"
    specs = registry(catalog.upstreams)
    assert set(specs) == {*VENDORS, "acme-llm", "local"}
    spec = specs["acme-llm"]
    assert spec.base_url_env == "TOKENRELAY_ACME_LLM_BASE_URL"
    assert spec.emulator_path == "/compat/acme-llm/v1"
    assert spec.endpoint_url({}) == "https://api.acme-llm.example/v1"
    assert spec.endpoint_url({spec.base_url_env: "http://h/v1/"}) == "http://h/v1"
    assert spec.api_key({}) is None and spec.api_key({"ACME_LLM_API_KEY": "k"}) == "k"
    assert spec.adapter.name == "acme-llm" and spec.adapter.native_format == "openai"


def test_the_packaged_catalog_declares_no_upstream(catalog: Catalog) -> None:
    assert catalog.upstreams == ()


def test_timeouts_per_vendor_override_the_settings_defaults() -> None:
    """`[timeouts.<vendor>]`, for built-in and configured vendors; later files win per field;
    0 removes a bound."""
    defaults = Timeouts(connect_s=10, first_byte_s=120, idle_s=120, total_s=600)
    upstream = '[upstreams.acme]\nbase_url = "https://acme.example/v1"\napi_key_env = "ACME_KEY"\n'
    cat = load_text(
        upstream + "[timeouts.anthropic]\nfirst_byte_s = 60\nidle_s = 30\n"
        "[timeouts.acme]\nconnect_s = 2.5\ntotal_s = 0\n"
    )
    assert cat.timeouts_for("anthropic", defaults) == Timeouts(10, 60, 30, 600)
    assert cat.timeouts_for("acme", defaults) == Timeouts(2.5, 120, 120, None)
    assert cat.timeouts_for("openai", defaults) is defaults
    later = Catalog.from_sources(
        [("b", "[timeouts.gemini]\nidle_s = 5\nfirst_byte_s = 7\n"),
         ("c", "[timeouts.gemini]\nidle_s = 9\n")]
    )  # fmt: skip
    assert later.timeouts_for("gemini", defaults) == Timeouts(10, 7, 9, 600)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[timeouts.nobody]\nidle_s = 5\n", "[timeouts.nobody]: no such vendor"),
        ("[timeouts.openai]\nread_s = 5\n", "unknown field(s) ['read_s']"),
        ("[timeouts.openai]\nidle_s = -1\n", "`idle_s` must be a number of seconds"),
        ('[timeouts.openai]\nidle_s = "5"\n', "`idle_s` must be a number of seconds"),
        ("[timeouts.openai]\nconnect_s = 0\n", "`connect_s` must be more than 0"),
        ("timeouts = 5\n", "`timeouts` must be a table"),
    ],
)
def test_invalid_timeouts_tables(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_text(text)
    assert message in str(caught.value)


def test_timeout_settings_and_the_deprecated_single_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CONNECT", "FIRST_BYTE", "IDLE", "TOTAL"):
        monkeypatch.delenv(f"TOKENRELAY_{name}_TIMEOUT_S", raising=False)
    monkeypatch.delenv("TOKENRELAY_UPSTREAM_TIMEOUT", raising=False)
    assert Settings().timeouts() == Timeouts(10, 120, 120, 600)
    monkeypatch.setenv("TOKENRELAY_UPSTREAM_TIMEOUT", "30")  # the old per-read timeout
    assert Settings().timeouts() == Timeouts(10, 30, 30, 600)
    monkeypatch.setenv("TOKENRELAY_IDLE_TIMEOUT_S", "0")  # the new variables win; 0: none
    monkeypatch.setenv("TOKENRELAY_CONNECT_TIMEOUT_S", "3")
    assert Settings().timeouts() == Timeouts(3, 30, None, 600)


def test_kind_and_batch_multiplier() -> None:
    cat = load_text(
        '[models."gpt-4o"]\nbatch = 0.4\n'
        '[models."my-embed"]\nvendor = "openai"\nkind = "embedding"\ncontext_window = 512\n'
        "input = 0.1\n"
    )
    gpt = cat.get("gpt-4o")
    assert gpt is not None and gpt.batch_ppm(1_000_000) == 400_000
    assert gpt.batch_ppm(1_234_567) == 493_827  # 493,826.8 rounded up: never below the price
    embed = cat.get("my-embed")
    assert embed is not None and embed.kind == "embedding" and embed.price.output == 0
    with pytest.raises(CatalogError, match="kind"):
        load_text('[models."gpt-4o"]\nkind = "image"\n')
    with pytest.raises(CatalogError, match="batch"):
        load_text('[models."gpt-4o"]\nbatch = 1.5\n')
