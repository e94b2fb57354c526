"""The operator's brand: site name, logo, colour, support address, legal links and the public
base URL, set once and read by every page, mail and docs example.

Set by environment variables (TOKENRELAY_SITE_NAME, ...) or a TOML file named by
TOKENRELAY_BRAND_FILE with the same names, which wins: a reseller's customers see the
reseller's name, never "tokenrelay". Absolute links come from `public_url`, never from the
request's Host header (which a client chooses).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tokenrelay.settings import Settings

_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


class BrandError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Brand:
    site_name: str
    public_url: str  # no trailing slash
    brand_color: str
    support_email: str | None = None
    logo_url: str | None = None
    terms_url: str | None = None
    privacy_url: str | None = None

    @property
    def https(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def slug(self) -> str:
        """The name as an identifier (a config key): "Acme AI" -> "acme-ai"."""
        return re.sub(r"[^a-z0-9]+", "-", self.site_name.lower()).strip("-") or "gateway"

    def css(self) -> str:
        """The brand's colours as CSS variables (a stylesheet: the CSP forbids inline style)."""
        return f":root{{--accent:{self.brand_color}}}\n"


def load_brand(settings: Settings) -> Brand:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    values: dict[str, Any] = {
        "site_name": settings.site_name,
        "public_url": settings.public_url or f"http://{host}:{settings.port}",
        "brand_color": settings.brand_color,
        "support_email": settings.support_email,
        "logo_url": settings.logo_url,
        "terms_url": settings.terms_url,
        "privacy_url": settings.privacy_url,
    }
    if settings.brand_file:
        try:
            doc = tomllib.loads(Path(settings.brand_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BrandError(f"{settings.brand_file}: {exc}") from None
        names = {f.name for f in fields(Brand)}
        unknown = set(doc) - names
        if unknown:
            raise BrandError(f"{settings.brand_file}: unknown key(s) {sorted(unknown)}")
        values.update({k: v for k, v in doc.items() if isinstance(v, str)})
    return _checked(Brand(**values))


def _checked(brand: Brand) -> Brand:
    if not brand.site_name.strip() or len(brand.site_name) > 60:
        raise BrandError("site_name: 1 to 60 characters")
    if not _COLOR.fullmatch(brand.brand_color):
        raise BrandError("brand_color: a colour like #3559c7")
    for name in ("public_url", "logo_url", "terms_url", "privacy_url"):
        url = getattr(brand, name)
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise BrandError(f"{name}: an http(s) URL")
    return replace(brand, public_url=brand.public_url.rstrip("/"))
