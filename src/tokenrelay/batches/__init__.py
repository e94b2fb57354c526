"""Batch jobs and files: OpenAI's Files + Batch APIs and Anthropic's Message Batches, run by
the gateway itself through its own request path at batch prices (jobs.py says how)."""

from __future__ import annotations

from starlette.routing import Route

from tokenrelay.batches.anthropic_api import AnthropicBatches
from tokenrelay.batches.jobs import BatchJobs
from tokenrelay.batches.openai_api import OpenAIBatches
from tokenrelay.batches.store import BatchStore
from tokenrelay.gateway.relay import Relay


def batch_service(relay: Relay, prefix: str) -> tuple[BatchJobs, list[Route]]:
    """The runner (not started) and the routes of both APIs under `prefix`."""
    s = relay.settings
    store = BatchStore(relay.meter.engine.engine)
    jobs = BatchJobs(relay, store, s.batch_concurrency)
    openai = OpenAIBatches(jobs, store, relay.keys, s.batch_max_bytes)
    anthropic = AnthropicBatches(jobs, store, relay.keys, s.batch_max_bytes, s.public_url)
    return jobs, [*openai.routes(prefix), *anthropic.routes(prefix)]
