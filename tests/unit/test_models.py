"""What each model renders (core/models.py): sizes offered, refused and upscaled to."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.models import can_upscale, largest_size, size_refusal, sizes_for
from providers.errors import ConfigError
from providers.presets import load_provider_configs


@pytest.mark.parametrize("model, sizes", [
    ("gemini-2.5-flash-image", ("1K",)), ("gemini-2.5-flash-image-preview", ("1K",)), ("nanobanana", ("1K",)),
    ("google/gemini-2.5-flash-image", ("1K",)),
    ("gemini-3-pro-image-preview", ("1K", "2K", "4K")), ("nanobanana_pro", ("1K", "2K", "4K")),
    ("gemini-3.1-flash-image-preview", ("1K", "2K", "4K")), ("nano-banana-2", ("1K", "2K", "4K")),
    ("my-gateway-alias", ("1K", "2K", "4K")),  # unknown: every size
])
def test_sizes_follow_the_model_family(model, sizes):
    assert sizes_for(model) == sizes


def test_the_operators_list_wins_and_is_ordered():
    assert sizes_for("my-gateway-alias", ("2K", "1K")) == ("1K", "2K")
    assert sizes_for("gemini-2.5-flash-image", ("1K", "2K")) == ("1K", "2K")


def router(**models: tuple[str, tuple[str, ...] | None]):
    configs = {name: SimpleNamespace(config=SimpleNamespace(model=model, resolutions=res))
               for name, (model, res) in models.items()}
    return SimpleNamespace(names=list(configs), get=configs.__getitem__)


def test_refusal_names_the_sizes_and_a_provider_that_can():
    providers = router(flash=("gemini-2.5-flash-image", None), pro=("nanobanana_pro", None))
    assert size_refusal(providers, None, "4K") == (
        "This model renders 1K only, so 4K is not available; choose 1K. "
        "The provider `pro` can render 4K: pick it with the provider option.")
    assert size_refusal(providers, "pro", "4K") is None and size_refusal(providers, None, None) is None
    alias = router(gw=("alias-x", ("1K", "2K")))
    assert size_refusal(alias, None, "4K") == "This model renders 1K and 2K only, so 4K is not available; choose 1K or 2K."


def test_upscale_goes_to_the_largest_size_above_the_delivered_one():
    providers = router(flash=("gemini-2.5-flash-image", None), pro=("gemini-3-pro-image-preview", None))
    assert largest_size(providers, "pro") == "4K" and can_upscale(providers, "pro", None)
    assert can_upscale(providers, "pro", "2K") and not can_upscale(providers, "pro", "4K")
    assert not can_upscale(providers, "flash", None)


def test_provider_resolutions_variable():
    base = {"PROVIDERS": "gw", "PROVIDER_GW_PRESET": "mulerun", "PROVIDER_GW_API_KEY": "k"}
    [config] = load_provider_configs({**base, "PROVIDER_GW_RESOLUTIONS": "1k, 2K"})
    assert config.resolutions == ("1K", "2K")
    [config] = load_provider_configs(base)
    assert config.resolutions is None
    with pytest.raises(ConfigError, match=r"PROVIDER_GW_RESOLUTIONS: '8K' must list sizes from 1K, 2K, 4K"):
        load_provider_configs({**base, "PROVIDER_GW_RESOLUTIONS": "8K"})
