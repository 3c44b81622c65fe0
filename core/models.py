"""What each model can render: the one table the bot reads to offer, refuse and upscale sizes.

    model family (aliases: providers/models.py)             sizes
    gemini-2.5-flash-image           (Nano Banana)           1K only
    gemini-3-pro-image-preview       (Nano Banana Pro)       1K, 2K, 4K
    gemini-3.1-flash-image-preview   (Nano Banana 2)         1K, 2K, 4K (and a 512 tier the bot
                                                             does not request)
    any other name (a gateway's own alias)                   every size, unless the operator lists
                                                             them in PROVIDER_<NAME>_RESOLUTIONS
"""
from __future__ import annotations

from typing import Any

from providers.models import FLASH, FLASH_2, PRO, RESOLUTIONS, model_family

RENDERS: dict[str, tuple[str, ...]] = {FLASH: ("1K",), PRO: ("1K", "2K", "4K"), FLASH_2: ("1K", "2K", "4K")}
DEFAULT_SIZE = "1K"  # what every model renders when no size is asked for


def sizes_for(model: str, configured: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The sizes a provider serving `model` renders, smallest first."""
    sizes = configured or RENDERS.get(model_family(model), RESOLUTIONS)
    return tuple(r for r in RESOLUTIONS if r in sizes)


def provider_sizes(providers: Any, name: str | None) -> tuple[str, ...]:
    """The sizes of a configured provider (None: the default one)."""
    config = providers.get(name if name in providers.names else providers.names[0]).config
    return sizes_for(config.model, config.resolutions)


def largest_size(providers: Any, name: str | None) -> str:
    return provider_sizes(providers, name)[-1]


def can_upscale(providers: Any, name: str | None, delivered: str | None) -> bool:
    """True when the provider renders a size above the one delivered (so an upscale changes something)."""
    delivered = delivered if delivered in RESOLUTIONS else DEFAULT_SIZE
    return RESOLUTIONS.index(largest_size(providers, name)) > RESOLUTIONS.index(delivered)


def size_refusal(providers: Any, name: str | None, resolution: str | None) -> str | None:
    """A sentence for a size the provider's model cannot render; None when it can (or none was asked)."""
    if resolution is None:
        return None
    sizes = provider_sizes(providers, name)
    if resolution in sizes:
        return None
    chosen = name if name in providers.names else providers.names[0]
    others = [n for n in providers.names if n != chosen and resolution in provider_sizes(providers, n)]
    text = (f"This model renders {_words(sizes)} only, so {resolution} is not available; "
            f"choose {_words(sizes, 'or')}.")
    if others:
        text += f" The provider `{others[0]}` can render {resolution}: pick it with the provider option."
    return text


def _words(items: tuple[str, ...], last: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"
