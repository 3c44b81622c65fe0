"""pricing: built-in prices per model family and resolution, .env overrides, token-based costs."""
from __future__ import annotations

import pytest

from core.prices import PriceTable, load_price_table, money
from providers.models import model_family, thinks


def table(env: dict[str, str], providers=("mule", "ib")) -> tuple[PriceTable, list[str]]:
    problems: list[str] = []
    return load_price_table(env, providers, problems), problems


@pytest.mark.parametrize("model, family", [
    ("gemini-2.5-flash-image", "gemini-2.5-flash-image"),
    ("gemini-2.5-flash-image-preview", "gemini-2.5-flash-image"),
    ("google/gemini-2.5-flash-image", "gemini-2.5-flash-image"),
    ("nanobanana", "gemini-2.5-flash-image"),
    ("nanobanana_pro", "gemini-3-pro-image-preview"),
    ("models/gemini-3-pro-image-preview", "gemini-3-pro-image-preview"),
    ("gemini-3-pro-image-preview-11-2025", "gemini-3-pro-image-preview"),
    ("nanobanana_2", "gemini-3.1-flash-image-preview"),
    ("nano-banana_pro", "gemini-3-pro-image-preview"),
    ("Nano_Banana_2", "gemini-3.1-flash-image-preview"),
    ("some-other-model", "some-other-model"),
])
def test_gateway_names_map_to_a_model_family(model, family):
    assert model_family(model) == family


def test_the_same_table_says_which_models_think():
    """Pricing and thinking (drafts, signatures) read one table: a name priced as Pro thinks."""
    for model in ("gemini-3-pro-image-preview", "nano_banana_pro", "google/nanobanana_2", "gemini-3-pro-image-x"):
        assert thinks(model), model
    for model in ("gemini-2.5-flash-image", "nano-banana", "some-other-model", ""):
        assert not thinks(model), model


@pytest.mark.parametrize("model, resolution, price", [
    ("gemini-2.5-flash-image-preview", None, 0.039),
    ("nanobanana", "4K", 0.039),
    ("nanobanana_pro", "1K", 0.134),
    ("gemini-3-pro-image-preview", "2K", 0.134),
    ("google/gemini-3-pro-image-preview", "4K", 0.24),
    ("nanobanana_2", "2K", 0.101),
    ("mystery-model", "1K", 0.134),
])
def test_builtin_prices(model, resolution, price):
    assert PriceTable().per_image("any", model, resolution) == price


def test_overrides_most_specific_first():
    prices, problems = table({
        "PRICE_MULE_4K": "0.5", "PRICE_MULE": "0.05",
        "PRICES": "nanobanana_pro:4K=0.3, gemini-3-pro-image-preview=0.2, my-model=0.01",
        "PRICE_UNKNOWN_MODEL": "0.07",
    })
    assert problems == []
    assert prices.per_image("mule", "gemini-3-pro-image-preview", "4K") == 0.5   # provider + resolution
    assert prices.per_image("mule", "gemini-3-pro-image-preview", "2K") == 0.05  # provider
    assert prices.per_image("ib", "nanobanana_pro", "4K") == 0.3                # model family + resolution
    assert prices.per_image("ib", "nanobanana_pro", "1K") == 0.2                # model family
    assert prices.per_image("ib", "my-model", None) == 0.01
    assert prices.per_image("ib", "nanobanana", "1K") == 0.039                  # built-in
    assert prices.per_image("ib", "unheard-of", "1K") == 0.07                   # unknown model
    assert prices.estimate("mule", "x", "4K", 4) == 2.0


def test_cost_uses_tokens_when_priced_and_reported():
    prices, problems = table({"PRICE_MULE_PER_MILLION_OUTPUT_TOKENS": "30",
                              "PRICE_MULE_PER_MILLION_INPUT_TOKENS": "0.3"})
    assert problems == []
    usage = {"input_tokens": 1000, "output_tokens": 1290}
    assert prices.cost("mule", "gemini-2.5-flash-image", None, 1, usage) == pytest.approx(0.0387 + 0.0003)
    # No usage reported: the image price; no token price for this provider: the image price.
    assert prices.cost("mule", "gemini-2.5-flash-image", None, 2, {}) == 0.078
    assert prices.cost("ib", "nanobanana_pro", "4K", 1, usage) == 0.24


def test_bad_values_and_unknown_variables_are_reported_one_line_each():
    _, problems = table({"PRICE_MULE_4K": "cheap", "PRICE_NOPE": "0.1", "PRICES": "x:8K=1,y=-2,z",
                         "PRICE_IB": "$0.2"})
    assert len(problems) == 5, problems
    assert any(p.startswith("PRICE_MULE_4K must be a price") for p in problems)
    assert any(p.startswith("PRICE_NOPE: no provider of that name") for p in problems)
    assert sum(p.startswith("PRICES:") for p in problems) == 3


def test_money_format():
    assert money(0.039) == "$0.039"
    assert money(0.5) == "$0.50"
    assert money(0.117) == "$0.117"
    assert money(12.4) == "$12.40"
    assert money(0) == "$0.00"
