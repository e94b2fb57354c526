"""The token counter's CPU and memory against tiktoken's: `python -m bench.tokenizer_cost`.

The gateway counts o200k_base tokens itself (billing/tokenizer.py) where a vendor reports no
usage, for the prompt size an Anthropic-format stream opens with, and for token-count calls.
For each kind of text, the CPU time (`time.process_time`, the lowest of `--rounds`) of a count
cold (the piece cache emptied), warm (the same text again), and tiktoken's `encode_ordinary` of
it, in ns a character, and whether the counts agree; then the memory each tokenizer adds to a
fresh process once loaded and after a count, private and mapped from files apart (ours maps a
table file that every process on the machine shares), and its load's CPU. tiktoken is a dev
dependency here (the tests' reference), not the gateway's.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.codex_prompt import body

REPO = Path(__file__).resolve().parent.parent

# A fresh interpreter's private (RssAnon) and file-backed (RssFile: ours is a mapped table,
# shared by every process on the machine) memory before and after loading one tokenizer, the
# load's CPU, then the same after counting the 40 KB prompt (which touches the table's pages).
_MEMORY = """
import json, sys, time
from bench.codex_prompt import body
def rss():
    kb = {}
    for line in open("/proc/self/status"):
        if line.startswith(("RssAnon", "RssFile")):
            kb[line.split(":")[0]] = int(line.split()[1]) / 1024
    return kb
from tokenrelay.billing import tokenizer
if sys.argv[1] == "tiktoken":
    from tiktoken._tiktoken import CoreBPE
text = body("openai", "gpt-4o-mini", 40, "Fix the test.", False)
before, cpu = rss(), time.process_time()
if sys.argv[1] == "tiktoken":
    ranks = {t: r for r, t in enumerate(tokenizer.tokens_by_rank(tokenizer.vocabulary()))}
    core = CoreBPE(ranks, tokenizer.SPECIAL_TOKENS, tokenizer.PAT_STR)
    del ranks
    count = lambda t: len(core.encode_ordinary(t))
else:
    count = tokenizer.load().count_ordinary
cpu, loaded = time.process_time() - cpu, rss()
count(text)
counted = rss()
print(json.dumps({"cpu_s": cpu, **{k: [loaded[k] - before[k], counted[k] - before[k]]
                                   for k in before}}))
"""


def texts() -> dict[str, str]:
    rng = random.Random(7)
    words = "".join(rng.choices(string.ascii_lowercase + "  ", k=100_000))
    return {
        "coding-agent prompt (40 KB)": body("openai", "gpt-4o-mini", 40, "Fix the test.", False),
        "prose (README.md)": (REPO / "README.md").read_text()[:60_000],
        "code (http_client.py)": (REPO / "src/tokenrelay/upstreams/http_client.py").read_text(),
        "random words (hostile)": words,
        "1 MB of one letter": "x" * 1_000_000,
    }


def best(rounds: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.tokenizer_cost", description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import tiktoken

    from tokenrelay.billing import tokenizer

    ours = tokenizer.load()
    theirs = tiktoken.Encoding(
        "o200k_base",
        pat_str=tokenizer.PAT_STR,
        mergeable_ranks={
            t: r for r, t in enumerate(tokenizer.tokens_by_rank(tokenizer.vocabulary()))
        },
        special_tokens=tokenizer.SPECIAL_TOKENS,
    )
    print("| text | chars | ours cold ns/char | ours warm | tiktoken | ours ÷ tiktoken (cold) "
          "| counts |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, text in texts().items():

        def cold(text: str = text) -> int:
            ours._counts.clear()
            return tokenizer.count(text)

        n = len(text)
        t_cold = best(args.rounds, cold)
        t_warm = best(args.rounds, lambda text=text: tokenizer.count(text))
        t_ref = best(args.rounds, lambda text=text: theirs.encode_ordinary(text))
        mine, ref = tokenizer.count(text), len(theirs.encode_ordinary(text))
        agree = "same" if mine == ref else f"{mine} vs {ref} ({(mine - ref) / ref:+.2%})"
        print(
            f"| {name} | {n:,} | {t_cold * 1e9 / n:.0f} | {t_warm * 1e9 / n:.0f} "
            f"| {t_ref * 1e9 / n:.0f} | {t_cold / t_ref:.1f} | {agree} |"
        )
    for which in ("ours", "tiktoken"):
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY, which],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        m = json.loads(out.stdout)
        (anon, anon_counted), (file, file_counted) = m["RssAnon"], m["RssFile"]
        print(
            f"{which}: loaded in {m['cpu_s']:.2f} s of CPU: +{anon:.1f} MB private, "
            f"+{file:.1f} MB mapped from files; after a 40 KB count +{anon_counted:.1f} private, "
            f"+{file_counted:.1f} mapped"
        )


if __name__ == "__main__":
    main()
