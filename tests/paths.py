"""Where the shared fixtures live: `../shared` beside the checkout (as in CI), or
TOKENRELAY_SHARED when set."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
_CANDIDATES = [
    Path(os.environ["TOKENRELAY_SHARED"]) if os.environ.get("TOKENRELAY_SHARED") else None,
    _REPO.parent / "shared",
    Path("/work/shared"),
]
SHARED = next((p for p in _CANDIDATES if p is not None and p.is_dir()), _REPO.parent / "shared")
RECORDINGS = SHARED / "fixtures" / "vendor-recordings"
