"""Refusals with a sentence for the member, shared by the cogs (bad input) and core (limits)."""


class InputError(Exception):
    """Bad input or a limit reached, with a message for the member."""


def failure_text(exc, *, details: bool) -> str:
    """A provider failure in plain words for the member: the sentence, and the model's own words when
    it refused. Raw finish reasons and the provider's name go into a small `-#` details line, shown
    only when the operator keeps SHOW_MODEL_INFO on."""
    from providers.errors import NoImageError, RefusedError

    extra = []
    if isinstance(exc, RefusedError):
        said = " ".join((exc.model_text or "").split())
        if isinstance(exc, NoImageError) and not said and not exc.reason:
            text = exc.user_message  # nothing came back: "try again, or rephrase"
        else:
            text = str(exc) + (f" It said: “{said}”" if said else "")
        if exc.reason:
            extra.append(f"reason: {exc.reason}")
    else:
        text = exc.user_message
    if exc.provider:
        extra.append(f"via {exc.provider}")
    return text + ("\n-# " + " · ".join(extra) if details and extra else "")
