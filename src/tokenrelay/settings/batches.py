"""Batches (tokenrelay.batches): concurrency, size bounds, and vendor batch APIs."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from tokenrelay.settings.group import Flag, Group, env


class BatchSettings(Group):
    # Lines run at once per process, and the largest batch file or Message Batches body taken.
    batch_concurrency: Annotated[int, Meta(ge=1)] = env("TOKENRELAY_BATCH_CONCURRENCY", 16)
    batch_max_bytes: Annotated[int, Meta(gt=0)] = env(
        "TOKENRELAY_BATCH_MAX_BYTES", 200 * 1024 * 1024
    )
    # Lines for a vendor with a batch API of its own go to it as one vendor batch (its batch
    # price); off: the gateway runs every line itself. Vendor batches are polled this often.
    batch_vendor_apis: Flag = env("TOKENRELAY_BATCH_VENDOR_APIS", True)
    batch_poll_s: Annotated[float, Meta(gt=0)] = env("TOKENRELAY_BATCH_POLL_S", 30.0)
