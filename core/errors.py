"""Refusals with a sentence for the member, shared by the cogs (bad input) and core (limits)."""


class InputError(Exception):
    """Bad input or a limit reached, with a message for the member."""
