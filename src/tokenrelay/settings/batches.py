"""Batches (tokenrelay.batches): concurrency, size bounds, and vendor batch APIs."""

from __future__ import annotations

from pydantic import Field

from tokenrelay.settings.group import Group


class BatchSettings(Group):
    # Lines run at once per process, and the largest batch file or Message Batches body taken.
    batch_concurrency: int = Field(16, alias="TOKENRELAY_BATCH_CONCURRENCY", ge=1)
    batch_max_bytes: int = Field(200 * 1024 * 1024, alias="TOKENRELAY_BATCH_MAX_BYTES", gt=0)
    # Lines for a vendor with a batch API of its own go to it as one vendor batch (its batch
    # price); off: the gateway runs every line itself. Vendor batches are polled this often.
    batch_vendor_apis: bool = Field(True, alias="TOKENRELAY_BATCH_VENDOR_APIS")
    batch_poll_s: float = Field(30.0, alias="TOKENRELAY_BATCH_POLL_S", gt=0)
