"""The contenders: each starts pinned to the gateway core, exposes one Target per scenario."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from bench import proc
from bench.loadgen import Target

REPO = Path(__file__).resolve().parent.parent
LITELLM_VENV = REPO / "bench" / ".venv-litellm"

OPENAI_MODEL = "gpt-4o"
GEMINI_MODEL = "gemini-2.5-flash"
ANTHROPIC_MODEL = "claude-sonnet-4-6"
ANTHROPIC_VERSION = "2023-06-01"

# Scenarios: which client format talks to which vendor format.
#   openai:     OpenAI client -> OpenAI vendor (same format; tokenrelay's fast path)
#   anthropic:  Anthropic client -> Anthropic vendor (same format; fast path)
#   translated: OpenAI client -> Anthropic vendor (format translation)
SCENARIOS = ("openai", "anthropic", "translated")
# Measured by bench.cpu_cost on tokenrelay alone: Responses client -> OpenAI Responses (fast path).
CPU_SCENARIOS = (*SCENARIOS, "responses")
PHASES = ("latency", "ttfc", "rps", "streams")


@dataclass
class Ctx:
    mock_port: int
    workdir: Path


@dataclass
class Contender(ABC):
    name: str
    scenarios: tuple[str, ...] = SCENARIOS
    phases: tuple[str, ...] = PHASES
    notes: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def start(self, ctx: Ctx) -> None: ...

    @abstractmethod
    def target(self, scenario: str) -> Target: ...

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        proc.stop(self.process)
        self.process = None


def _openai(base: str, path: str, model: str, key: str | None) -> Target:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return Target(base + path, "openai", model, headers)


def _anthropic(base: str, path: str, key: str | None) -> Target:
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if key:
        headers["x-api-key"] = key
    return Target(base + path, "anthropic", ANTHROPIC_MODEL, headers)


@dataclass
class Direct(Contender):
    """Client straight to the mock: the baseline every 'added' figure subtracts."""

    scenarios: tuple[str, ...] = ("openai", "anthropic")
    base: str = ""

    def start(self, ctx: Ctx) -> None:
        self.base = f"http://127.0.0.1:{ctx.mock_port}"

    def target(self, scenario: str) -> Target:
        if scenario == "openai":
            return _openai(self.base, "/v1/chat/completions", OPENAI_MODEL, "bench")
        return _anthropic(self.base, "/v1/messages", "bench")


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000; keepalive_timeout 120s;
  upstream mock {{
    server 127.0.0.1:{mock};
    keepalive 1024; keepalive_requests 1000000; keepalive_timeout 120s;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location /v1/ {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


@dataclass
class Nginx(Contender):
    """nginx as a plain reverse proxy: the floor for one proxy hop. No translation."""

    scenarios: tuple[str, ...] = ("openai", "anthropic")
    base: str = ""

    def start(self, ctx: Ctx) -> None:
        d = ctx.workdir / "nginx"
        d.mkdir(parents=True, exist_ok=True)
        port = proc.free_port()
        conf = d / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=d, mock=ctx.mock_port, port=port))
        log = d / "stdout.log"
        self.process = proc.spawn(["nginx", "-c", str(conf), "-p", str(d)], proc.GATEWAY_CORE, log)
        self.base = f"http://127.0.0.1:{port}"
        proc.wait_http(self.base + "/", self.process, 20, log)

    def target(self, scenario: str) -> Target:
        if scenario == "openai":
            return _openai(self.base, "/v1/chat/completions", OPENAI_MODEL, "bench")
        return _anthropic(self.base, "/v1/messages", "bench")


LITELLM_CONFIG = """\
model_list:
  - model_name: {openai_model}
    litellm_params:
      model: openai/{openai_model}
      api_base: "http://127.0.0.1:{mock}/v1"
      api_key: bench
  - model_name: {anthropic_model}
    litellm_params:
      model: anthropic/{anthropic_model}
      api_base: "http://127.0.0.1:{mock}"
      api_key: bench
litellm_settings:
  set_verbose: false
  json_logs: true
  request_timeout: 600
  telemetry: false
general_settings:
  master_key: sk-bench-master
  disable_spend_logs: true
  disable_error_logs: true
"""
LITELLM_KEY = "sk-bench-master"


@dataclass
class LiteLLM(Contender):
    """LiteLLM proxy, its production settings for one worker, no database."""

    base: str = ""

    def start(self, ctx: Ctx) -> None:
        d = ctx.workdir / "litellm"
        d.mkdir(parents=True, exist_ok=True)
        cfg = d / "config.yaml"
        cfg.write_text(
            LITELLM_CONFIG.format(
                mock=ctx.mock_port, openai_model=OPENAI_MODEL, anthropic_model=ANTHROPIC_MODEL
            )
        )
        port = proc.free_port()
        env = {
            "LITELLM_MODE": "PRODUCTION",
            "LITELLM_LOG": "ERROR",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "DISABLE_ADMIN_UI": "True",
            "NO_DOCS": "True",
        }
        cmd = [
            str(LITELLM_VENV / "bin" / "litellm"), "--config", str(cfg), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1",
        ]  # fmt: skip
        log = d / "stdout.log"
        self.process = proc.spawn(cmd, proc.GATEWAY_CORE, log, env=env, cwd=d)
        self.base = f"http://127.0.0.1:{port}"
        proc.wait_http(self.base + "/health/liveliness", self.process, 120, log)

    def target(self, scenario: str) -> Target:
        if scenario == "openai":
            return _openai(self.base, "/v1/chat/completions", OPENAI_MODEL, LITELLM_KEY)
        if scenario == "translated":
            return _openai(self.base, "/v1/chat/completions", ANTHROPIC_MODEL, LITELLM_KEY)
        return _anthropic(self.base, "/v1/messages", LITELLM_KEY)


@dataclass
class TokenRelay(Contender):
    """tokenrelay serve, one worker; `billing=False` sets TOKENRELAY_BILLING=off."""

    billing: bool = True
    pools: int = 0  # > 0: the vendors get this many deployments, all pointing at the mock
    profile: Path | None = None  # run under cProfile, its stats written here at stop
    source: Path | None = None  # another tree's src/ (cpu_cost --against), else this one's
    # "granian": the same app under granian (ASGI, uvloop, one worker) instead of `tokenrelay
    # serve`'s uvicorn (cpu_cost --servers): http_guard's deadlines and caps are uvicorn's
    server: str = "uvicorn"
    base: str = ""
    key: str = ""

    def start(self, ctx: Ctx) -> None:
        d = ctx.workdir / self.name
        d.mkdir(parents=True, exist_ok=True)
        db = d / "tokenrelay.db"  # its own file: variants may run side by side (cpu_cost)
        port = proc.free_port()
        env = {
            "TOKENRELAY_OPENAI_BASE_URL": f"http://127.0.0.1:{ctx.mock_port}/v1",
            "TOKENRELAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{ctx.mock_port}",
            "TOKENRELAY_GEMINI_BASE_URL": f"http://127.0.0.1:{ctx.mock_port}",
            "OPENAI_API_KEY": "bench",
            "ANTHROPIC_API_KEY": "bench",
            "GEMINI_API_KEY": "bench",
            "TOKENRELAY_EMULATE": "none",
            "TOKENRELAY_DATABASE_URL": f"sqlite:///{db}",
            "TOKENRELAY_ADMIN_TOKEN": "bench-admin",
            "TOKENRELAY_LOG_LEVEL": "warning",
        }
        if self.pools:
            catalog = d / "pools.toml"
            catalog.write_text(pool_catalog(ctx.mock_port, self.pools))
            env["TOKENRELAY_CATALOG"] = str(catalog)
            env["BENCH_POOL_KEY"] = "bench"
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)  # ahead of the editable install's path
        if not self.billing:
            env["TOKENRELAY_BILLING"] = "off"
            if not billing_switch_exists():
                self.notes.append("TOKENRELAY_BILLING is not a known setting yet: billing stays on")
        log = d / "stdout.log"
        if os.environ.get("BENCH_GATEWAY_PYTHONPATH"):  # e.g. a sitecustomize that traces GC
            env["PYTHONPATH"] = os.environ["BENCH_GATEWAY_PYTHONPATH"]
        cmd = [str(REPO / ".venv" / "bin" / "tokenrelay"), "serve", "--port", str(port)]
        if self.server == "granian":
            cmd = [
                str(REPO / ".venv" / "bin" / "granian"),
                *("--interface", "asgi", "--factory", "--loop", "uvloop", "--workers", "1"),
                *("--runtime-threads", "1", "--host", "127.0.0.1", "--port", str(port)),
                *("--no-ws", "--log-level", "warning", "tokenrelay.server.serve:worker_app"),
            ]
        if self.profile is not None:
            # The event loop thread's CPU time, not wall time (a shared machine's waits).
            code = (
                "import cProfile, runpy, sys, time\n"
                "p = cProfile.Profile(time.thread_time)\n"
                "sys.argv = sys.argv[1:]\n"
                "p.enable()\n"
                "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
                f"finally:\n    p.disable()\n    p.dump_stats({str(self.profile)!r})\n"
            )
            cmd[:0] = [str(REPO / ".venv" / "bin" / "python"), "-c", code]
        self.process = proc.spawn(cmd, proc.GATEWAY_CORE, log, env=env, cwd=d)
        self.base = f"http://127.0.0.1:{port}"
        # Its health check, as an orchestrator's: "/" is the storefront, whose first request
        # loads every page (and jinja2) into the process.
        proc.wait_http(self.base + "/healthz", self.process, 60, log)
        req = urllib.request.Request(
            self.base + "/admin/v1/keys",
            data=json.dumps({"name": "bench", "credits_usd": "1000000"}).encode(),
            headers={"authorization": "Bearer bench-admin", "content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            self.key = json.loads(resp.read())["key"]

    def target(self, scenario: str) -> Target:
        if scenario == "openai":
            return _openai(self.base, "/api/proxy/v1/chat/completions", OPENAI_MODEL, self.key)
        if scenario == "translated":
            return _openai(self.base, "/api/proxy/v1/chat/completions", ANTHROPIC_MODEL, self.key)
        if scenario == "responses":
            headers = {"authorization": f"Bearer {self.key}"}
            return Target(self.base + "/api/proxy/v1/responses", "responses", OPENAI_MODEL, headers)
        if scenario == "gemini":  # Gemini client -> Gemini vendor: the fast path (cpu_cost only)
            path = f"/api/proxy/v1beta/models/{GEMINI_MODEL}:generateContent"
            return Target(self.base + path, "gemini", GEMINI_MODEL, {"x-goog-api-key": self.key})
        return _anthropic(self.base, "/api/proxy/v1/messages", self.key)


def export_tree(ref: str, into: Path, *paths: str) -> Path:
    """git `ref`'s `paths` (default src/) extracted under `into`, which is returned: another
    version's code for a TokenRelay's `source` (its `into / "src"`)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", ref, *(paths or ("src",))], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def pool_catalog(mock_port: int, n: int) -> str:
    """`n` deployments of the OpenAI and Anthropic vendors, all on the mock: the pool path
    (pick, lease, release, retarget) with the same upstream as the single-key variant."""
    bases = {
        "openai": f"http://127.0.0.1:{mock_port}/v1",
        "anthropic": f"http://127.0.0.1:{mock_port}",
    }
    return "\n".join(
        f'[[deployments.{vendor}]]\nname = "d{i}"\nbase_url = "{base}"\n'
        'api_key_env = "BENCH_POOL_KEY"\n'
        for vendor, base in bases.items()
        for i in range(1, n + 1)
    )


def billing_switch_exists() -> bool:
    """Whether the checked-out gateway reads TOKENRELAY_BILLING (it may not yet)."""
    settings = REPO / "src" / "tokenrelay" / "settings"  # one module a concern
    return any('"TOKENRELAY_BILLING"' in f.read_text() for f in settings.glob("*.py"))


ALL = ("direct", "nginx", "litellm", "tokenrelay", "tokenrelay-nobilling")


def make(name: str, quick: bool) -> Contender:
    """A contender; quick mode drops what no target ratio needs (LiteLLM's translated path,
    the billing-off variant's stream phases)."""
    if name == "direct":
        return Direct(name)
    if name == "nginx":
        return Nginx(name)
    if name == "litellm":
        return LiteLLM(name, scenarios=("openai", "anthropic") if quick else SCENARIOS)
    if name == "tokenrelay":
        return TokenRelay(name)
    if name == "tokenrelay-nobilling":
        return TokenRelay(
            name,
            scenarios=("openai", "anthropic") if quick else SCENARIOS,
            phases=("latency", "rps") if quick else PHASES,
            billing=False,
        )
    raise ValueError(f"unknown contender {name!r}; known: {', '.join(ALL)}")
