"""What one generation costs: a price per image by provider, model and resolution, or by tokens.

Built-in prices (US dollars per output image, Google's list prices for the Gemini API; gateways
resell at about these prices, check yours and override them in `.env`):

    model family (and its gateway aliases)                          1K      2K      4K
    gemini-2.5-flash-image   (-preview, nanobanana)                 0.039   0.039   0.039
    gemini-3-pro-image-preview   (nanobanana_pro)                   0.134   0.134   0.24
    gemini-3.1-flash-image-preview   (nanobanana_2, Nano Banana 2)  0.067   0.101   0.151
    any other model: PRICE_UNKNOWN_MODEL (default 0.134, so budgets err on the safe side)

Nano Banana (Flash) makes one size only (1290 output tokens × $30 per million = $0.039), so it
costs the same at every resolution. A request without a resolution is priced as 1K.

Overrides, most specific first (see .env.example):
    PRICE_<PROVIDER>_<1K|2K|4K>=0.05     one gateway at one resolution
    PRICE_<PROVIDER>=0.05                one gateway, every resolution
    PRICES=<model>[:<res>]=<price>,...   a model family wherever it is served
    PRICE_<PROVIDER>_PER_MILLION_OUTPUT_TOKENS=30 (and ..._INPUT_TOKENS=0.3): when set and the
        gateway reports token usage, the cost comes from the tokens instead of the image price.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from providers.models import FLASH, FLASH_2, PRO, RESOLUTIONS, model_family

DEFAULT_RESOLUTION = "1K"

BUILTIN_PRICES: dict[str, dict[str, float]] = {
    FLASH: {"1K": 0.039, "2K": 0.039, "4K": 0.039},
    PRO: {"1K": 0.134, "2K": 0.134, "4K": 0.24},
    FLASH_2: {"1K": 0.067, "2K": 0.101, "4K": 0.151},
}
UNKNOWN_MODEL_PRICE = 0.134

_TOKEN_SUFFIXES = {"PER_MILLION_OUTPUT_TOKENS": "output", "PER_MILLION_INPUT_TOKENS": "input"}


def _resolution(resolution: str | None) -> str:
    return (resolution or DEFAULT_RESOLUTION).upper()


@dataclass(frozen=True)
class PriceTable:
    # provider name -> resolution ("*" for every resolution) -> price per image
    provider_prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # model family -> resolution ("*" for every resolution) -> price per image (from PRICES)
    model_prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # provider name -> {"input": $/1M tokens, "output": $/1M tokens}
    token_prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    unknown_model_price: float = UNKNOWN_MODEL_PRICE

    def per_image(self, provider: str, model: str, resolution: str | None) -> float:
        res = _resolution(resolution)
        family = model_family(model)
        for table, key in ((self.provider_prices, provider.lower()), (self.model_prices, family)):
            prices = table.get(key, {})
            if res in prices:
                return prices[res]
            if "*" in prices:
                return prices["*"]
        builtin = BUILTIN_PRICES.get(family)
        if builtin is not None:
            return builtin.get(res, max(builtin.values()))
        return self.unknown_model_price

    def estimate(self, provider: str, model: str, resolution: str | None, images: int) -> float:
        return round(self.per_image(provider, model, resolution) * images, 6)

    def cost(self, provider: str, model: str, resolution: str | None, images: int,
             usage: Mapping[str, Any] | None = None) -> float:
        """The recorded cost: by tokens when the provider has token prices and the gateway reported
        output tokens, else the image price times the images returned."""
        tokens = self.token_prices.get(provider.lower())
        output = _count((usage or {}).get("output_tokens"))
        if tokens and "output" in tokens and output:
            input_tokens = _count((usage or {}).get("input_tokens")) or 0
            return round((output * tokens["output"] + input_tokens * tokens.get("input", 0.0)) / 1e6, 6)
        return self.estimate(provider, model, resolution, images)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def load_price_table(env: Mapping[str, str], provider_names: Iterable[str], problems: list[str]) -> PriceTable:
    """Read PRICES, PRICE_<PROVIDER>[_<RES>], token prices and PRICE_UNKNOWN_MODEL; every bad value
    or unknown PRICE_ variable becomes one line in `problems`."""
    used: set[str] = set()

    def price(name: str) -> float | None:
        raw = env.get(name, "").strip()
        used.add(name)
        if not raw:
            return None
        value = _parse_price(raw)
        if value is None:
            problems.append(f"{name} must be a price like 0.039 (dollars, not negative), got {raw!r}")
        return value

    provider_prices: dict[str, dict[str, float]] = {}
    token_prices: dict[str, dict[str, float]] = {}
    for name in provider_names:
        prefix = f"PRICE_{name.upper()}"
        found = {res: price(f"{prefix}_{res}") for res in RESOLUTIONS} | {"*": price(prefix)}
        if any(v is not None for v in found.values()):
            provider_prices[name.lower()] = {k: v for k, v in found.items() if v is not None}
        found = {kind: price(f"{prefix}_{suffix}") for suffix, kind in _TOKEN_SUFFIXES.items()}
        if any(v is not None for v in found.values()):
            token_prices[name.lower()] = {k: v for k, v in found.items() if v is not None}
    unknown = price("PRICE_UNKNOWN_MODEL")
    model_prices = _parse_prices_list(env.get("PRICES", ""), problems)
    for name in sorted(env):
        if name.startswith("PRICE_") and name not in used and env[name].strip():
            problems.append(f"{name}: no provider of that name in PROVIDERS (use PRICE_<PROVIDER>, "
                            "PRICE_<PROVIDER>_<1K|2K|4K> or PRICES=model:res=price)")
    return PriceTable(provider_prices, model_prices, token_prices,
                      UNKNOWN_MODEL_PRICE if unknown is None else unknown)


_ENTRY = re.compile(r"^(?P<model>[^:=\s]+)(?::(?P<res>[0-9][kK]))?\s*=\s*(?P<price>\S+)$")


def _parse_prices_list(raw: str, problems: list[str]) -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        match = _ENTRY.match(entry)
        value = _parse_price(match["price"]) if match else None
        res = (match["res"] or "*").upper() if match else "*"
        if match is None or value is None or (res != "*" and res not in RESOLUTIONS):
            problems.append(f"PRICES: {entry!r} should look like model=0.039 or model:4K=0.24 "
                            "(resolution 1K, 2K or 4K; dollars, not negative)")
            continue
        prices.setdefault(model_family(match["model"]), {})[res] = value
    return prices


def _parse_price(raw: str) -> float | None:
    try:
        value = float(raw.strip().lstrip("$"))
    except ValueError:
        return None
    return value if value >= 0 and value != float("inf") else None


def money(amount: float) -> str:
    """$0.039 for small amounts (a single image), $12.40 for totals."""
    if 0 < abs(amount) < 1:
        return f"${amount:.3f}".rstrip("0").rstrip(".") if round(amount, 2) != amount else f"${amount:.2f}"
    return f"${amount:,.2f}"
