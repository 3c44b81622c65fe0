"""providers.redact: credentials are masked, ordinary words next to them are not."""
from __future__ import annotations

import pytest

from providers.redact import Redactor

redact = Redactor()


@pytest.mark.parametrize("text, secret", [
    ("Authorization: Bearer abc.def", "abc.def"),
    ('{"error": "bad Bearer sk-live_9x/+Q=="}', "sk-live_9x/+Q=="),
    ("upstream said: bearer t0k3n, try again", "t0k3n"),
])
def test_bearer_tokens_are_masked(text, secret):
    masked = redact(text)
    assert secret not in masked and "***" in masked


@pytest.mark.parametrize("text", [
    "google (default): format=gemini auth=bearer stream=yes timeout=300s retries=2",
    "auth=bearer streaming=yes",
])
def test_a_setting_after_the_word_bearer_is_not_eaten(text):
    assert redact(text) == text
