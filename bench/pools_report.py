"""`make pools-report` (= `python -m bench.pools_report`): the upstream-pool figures from one
run, as tests/e2e/test_pools.py measures them against the emulator with the official SDK.

- 3 Anthropic deployments, one healthy, one answering 429 (retry-after 1 s), one killed (no
  process on its port), 80 requests (1 in 4 streamed) from 8 threads, then the healthy one
  drained so that the model's fallback answers: requests served, client-visible errors,
  retries, fallbacks, and billed tokens against the tokens the client received;
- 6 conversations × 6 turns over 3 healthy deployments, each with its own prompt cache: the
  share of prompt tokens read from the cache with session affinity and without.

The tests assert the targets (no client-visible error, billed == delivered, affinity well
above none); this prints their figures, and fails when they do.
"""

from __future__ import annotations

import re
import subprocess
import sys

from bench.contenders import REPO

TESTS = "test_mixed_faults_run_prints_figures or test_affinity_keeps_conversations"


def main() -> int:
    cmd = [
        sys.executable, "-m", "pytest", "tests/e2e/test_pools.py", "-k", TESTS, "-s", "-q",
        "-p", "no:randomly", "-p", "no:cacheprovider",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = out.stdout.splitlines()
    run = next((ln for ln in lines if ln.startswith("pools run:")), None)
    cache = next((ln for ln in lines if ln.startswith("cache-read share:")), None)
    states = next((ln for ln in lines if ln.startswith("deployments:")), None)
    if out.returncode != 0 or run is None or cache is None:
        print(out.stdout[-4000:] + out.stderr[-2000:], file=sys.stderr)
        print("pools report: the run failed (above)", file=sys.stderr)
        return 1
    f = dict(re.findall(r"(\w+)=(\([^)]*\)|\S+)", run))
    billed, delivered = f["billed_tokens"], f["delivered_tokens"]
    print("pools: 3 deployments (a healthy, b 429 with retry-after 1 s, c killed), then a drained")
    print(f"  requests            {f['requests']}")
    print(f"  served              {f['served']}")
    print(f"  client errors       {f['client_errors']}   (target 0)")
    print(f"  retries             {f['retries']}   (attempts beyond the first, usage records)")
    print(f"  fallbacks           {f['fallbacks']}   (answered by the fallback model)")
    print(f"  billed tokens       {billed} (input, output) over {f['billed_records']} records")
    print(f"  delivered tokens    {delivered}   billed == delivered: {billed == delivered}")
    if states is not None:
        print(f"  {states}")
    print(f"prompt cache, 6 conversations × 6 turns over 3 deployments: {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
