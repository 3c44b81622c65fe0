"""Reading typed values from environment variables, for provider settings and the bot's alike.
Each parser raises ValueError with the words that complete "VARIABLE ..." in a one-line problem."""
from __future__ import annotations

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def parse_int(raw: str, minimum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"must be a whole number >= {minimum}")
    return value


def parse_seconds(raw: str, *, allow_zero: bool = False) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if value != value or value == float("inf") or value < 0 or (value == 0 and not allow_zero):
        raise ValueError("must be a number of seconds above 0" if not allow_zero else
                         "must be a number of seconds, 0 or more")
    return value
