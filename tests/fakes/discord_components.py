"""Discord's limits on message components and interaction choices, answered as Discord does: 400
`{"code": 50035, "message": "Invalid Form Body", "errors": {...}}` naming the offending field, so a
view Discord would reject fails the test that sends it.

    action rows per message            5      BASE_TYPE_BAD_LENGTH  "Must be between 1 and 5 in length."
    buttons per row (or one select)    5      BASE_TYPE_BAD_LENGTH
    custom_id                          100    BASE_TYPE_MAX_LENGTH  "Must be 100 or fewer in length."
    button label                       80     BASE_TYPE_MAX_LENGTH
    select options                     25     BASE_TYPE_BAD_LENGTH  "Must be between 1 and 25 in length."
    custom_ids within one message      unique COMPONENT_CUSTOM_ID_DUPLICATED
    autocomplete choices               25     BASE_TYPE_MAX_LENGTH  "Must be 25 or fewer in length."
Messages with the IS_COMPONENTS_V2 flag lay out differently; only field lengths are checked there.
"""
from __future__ import annotations

from typing import Any

from .discord_messages import form_error

MAX_ROWS, MAX_PER_ROW, MAX_CUSTOM_ID, MAX_LABEL, MAX_OPTIONS, MAX_CHOICES = 5, 5, 100, 80, 25, 25
ACTION_ROW, BUTTON, SELECTS = 1, 2, (3, 5, 6, 7, 8)
IS_COMPONENTS_V2 = 1 << 15


def _bad_length(path: tuple[str, ...], low: int, high: int):
    return form_error(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _too_long(path: tuple[str, ...], limit: int):
    return form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def check_components(body: dict[str, Any], path: tuple[str, ...] = ()) -> None:
    components = body.get("components")
    if not components:
        return
    path = path + ("components",)
    v2 = bool(int(body.get("flags") or 0) & IS_COMPONENTS_V2)
    if not v2 and len(components) > MAX_ROWS:
        raise _bad_length(path, 1, MAX_ROWS)
    seen: set[str] = set()
    for r, row in enumerate(components):
        children = row.get("components") or []
        if not v2 and row.get("type") == ACTION_ROW:
            selects = [c for c in children if c.get("type") in SELECTS]
            if not 1 <= len(children) <= MAX_PER_ROW or (selects and len(children) > 1):
                raise _bad_length(path + (str(r), "components"), 1, 1 if selects else MAX_PER_ROW)
        for c, item in enumerate(children):
            _check_item(item, path + (str(r), "components", str(c)), seen)


def _check_item(item: dict[str, Any], path: tuple[str, ...], seen: set[str]) -> None:
    custom_id = item.get("custom_id")
    if custom_id is not None:
        if len(custom_id) > MAX_CUSTOM_ID:
            raise _too_long(path + ("custom_id",), MAX_CUSTOM_ID)
        if custom_id in seen:
            raise form_error(path + ("custom_id",), "COMPONENT_CUSTOM_ID_DUPLICATED",
                             "Component custom id cannot be duplicated")
        seen.add(custom_id)
    if item.get("type") == BUTTON and len(item.get("label") or "") > MAX_LABEL:
        raise _too_long(path + ("label",), MAX_LABEL)
    if item.get("type") == 3 and not 1 <= len(item.get("options") or []) <= MAX_OPTIONS:
        raise _bad_length(path + ("options",), 1, MAX_OPTIONS)


def check_choices(data: dict[str, Any], path: tuple[str, ...] = ("data",)) -> None:
    if len(data.get("choices") or []) > MAX_CHOICES:
        raise _too_long(path + ("choices",), MAX_CHOICES)
