"""One exception tree for every provider failure, organised by cause.

Each error carries a one-sentence `user_message` safe to show in Discord (never a key, never a raw
body) and flags the retry policy reads: `retryable` (same provider again) and `failover` (worth
trying the next provider).
"""
from __future__ import annotations


class ProviderError(Exception):
    retryable = False
    failover = True
    default_message = "The image service failed."

    def __init__(self, message: str | None = None, *, provider: str | None = None,
                 status: int | None = None, detail: str | None = None) -> None:
        self.provider = provider
        self.status = status
        self.detail = detail  # short, redacted excerpt of the gateway's own words, for logs
        super().__init__(message or self.default_message)

    @property
    def user_message(self) -> str:
        return str(self)

    @property
    def operator_message(self) -> str:
        """One line for whoever runs the bot (CLI, failover notes): the sentence, then the gateway's
        own words."""
        sentence = self._operator_sentence
        text = f"{sentence.rstrip('.')} ({self.detail})." if self.detail else sentence
        return " ".join(text.split())

    @property
    def _operator_sentence(self) -> str:
        return self.user_message


class ConfigError(Exception):
    """Configuration is unusable; the message names the variable."""


class AuthError(ProviderError):
    default_message = "The image service rejected the bot's API key; the bot's operator needs to check it."

    @property
    def _operator_sentence(self) -> str:  # the member's sentence sends them to the operator
        return "The gateway rejected the API key."


class BadRequestError(ProviderError):
    failover = False
    default_message = "The image service rejected the request as invalid."


class RateLimitError(ProviderError):
    retryable = True
    default_message = "The image service is rate limiting requests; try again shortly."

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **kw) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)

    @property
    def user_message(self) -> str:
        if self.retry_after:
            return f"The image service is busy; try again in about {max(1, round(self.retry_after))} s."
        return str(self)


class ProviderTimeout(ProviderError):
    retryable = True
    default_message = "The image service took too long to answer."


class ServerError(ProviderError):
    """5xx answers and connection failures: the gateway is down or overloaded."""

    retryable = True
    default_message = "The image service is unavailable right now; try again in a few minutes."


class MalformedResponse(ProviderError):
    default_message = "The image service sent an answer the bot could not read."


class RefusedError(ProviderError):
    """The model declined: a safety block, a prohibited prompt, or a text-only answer.

    Final: not retried and not sent to another provider.
    """

    failover = False
    default_message = "The model declined to make this image."

    def __init__(self, message: str | None = None, *, reason: str | None = None,
                 model_text: str | None = None, **kw) -> None:
        self.reason = reason  # e.g. IMAGE_SAFETY, blockReason SAFETY, content_filter
        self.model_text = model_text  # what the model said instead, if anything
        super().__init__(message, **kw)

    @property
    def user_message(self) -> str:
        said = (self.model_text or "").strip()
        base = str(self)
        if self.reason:
            base = f"{base.rstrip('.')} ({self.reason})."
        return f"{base} The model said: {said}" if said else base


class NoImageError(RefusedError):
    """A successful answer that holds no image (text only, or empty)."""

    default_message = "The model answered without an image."

    @property
    def user_message(self) -> str:
        if not (self.model_text or "").strip() and not self.reason:  # nothing at all came back
            return f"{str(self).rstrip('.')} and gave no reason; try again, or rephrase the prompt."
        return super().user_message


def error_class_for_status(status: int) -> type[ProviderError]:
    """The one map from an HTTP status to its error class (an error body may know better:
    providers.parsing.error_from_body reads the gateway's codes first)."""
    if status in (401, 403):
        return AuthError
    if status in (408, 504, 524):
        return ProviderTimeout
    if status == 429:
        return RateLimitError
    if 400 <= status < 500:
        return BadRequestError
    return ServerError


# When every provider failed, tell the user the thing they can act on: "busy, retry in N s"
# beats "took too long" beats "unavailable" beats "unreadable answer" beats "bad key".
_RANK = (RateLimitError, ProviderTimeout, ServerError, MalformedResponse, AuthError)


def most_meaningful(errors: list[ProviderError]) -> ProviderError:
    def rank(err: ProviderError) -> int:
        return next((i for i, cls in enumerate(_RANK) if isinstance(err, cls)), len(_RANK))

    best = min(errors, key=rank)
    if len(errors) > 1:
        summary = "; ".join(f"{e.provider}: {type(e).__name__}" + (f" HTTP {e.status}" if e.status else "")
                            for e in errors)
        best.detail = f"all providers failed ({summary})" + (f"; {best.detail}" if best.detail else "")
    return best
