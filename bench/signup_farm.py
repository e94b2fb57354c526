"""How many accounts one client address can farm from a running gateway's sign-up form (issue
20, item 3): tries N sign-ups in a row from this machine, then reports how many accounts were
made, how many hold any credit and how many could create a key without opening the mailed
verification link.

    python -m bench.signup_farm --url http://127.0.0.1:8080 --tries 100
"""

from __future__ import annotations

import argparse
import re
import secrets
import time

import httpx

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
ONCE = re.compile(r'name="once" value="([^"]+)"')
BALANCE = re.compile(r'data-testid="balance">\$([0-9.]+)<')


def farm_one(url: str, tag: str) -> tuple[bool, bool, bool]:
    """(account made, holds credit, made a key) for one sign-up attempt."""
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as http:
        token = CSRF.search(http.get("/signup").text)
        assert token, "no sign-up form"
        form = {"email": f"farm-{tag}@example.com", "password": "farm password 123"}
        r = http.post("/signup", data={**form, "csrf": token.group(1)})
        if r.url.path != "/dashboard":
            return False, False, False
        balance = BALANCE.search(r.text)
        credited = bool(balance) and float(balance.group(1)) > 0
        once = ONCE.search(r.text)
        tokens = {"csrf": CSRF.search(r.text).group(1)}  # type: ignore[union-attr]
        made = http.post(
            "/dashboard/keys",
            data={"name": "farmed", **tokens, **({"once": once.group(1)} if once else {})},
        )
        return True, credited, 'data-testid="new-key"' in made.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--tries", type=int, default=100)
    args = parser.parse_args()
    run = secrets.token_hex(3)
    started = time.monotonic()
    results = [farm_one(args.url, f"{run}-{i}") for i in range(args.tries)]
    took = time.monotonic() - started
    made = sum(r[0] for r in results)
    print(
        f"{args.tries} sign-ups from one address in {took:.1f} s: {made} accounts, "
        f"{sum(r[1] for r in results)} with credit, {sum(r[2] for r in results)} with a key "
        "(before verifying the address)"
    )


if __name__ == "__main__":
    main()
