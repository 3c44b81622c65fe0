"""The result buttons' layout and custom ids (cogs/views.py), within Discord's limits."""
from __future__ import annotations

import pytest

from cogs.views import ActionButton, describe_view, result_view

JOB = "0123456789ab"  # job ids are 12 hex digits


def rows(view) -> list[list[str]]:
    by_row: dict[int, list[str]] = {}
    for item in view.children:
        by_row.setdefault(item.row, []).append(item.item.label)
    return [by_row[r] for r in sorted(by_row)]


@pytest.mark.parametrize("images, upscale, expected", [
    (1, True, [["Upscale", "Vary"], ["Reroll", "Remix", "Continue from here", "Delete"]]),
    (1, False, [["Vary"], ["Reroll", "Remix", "Continue from here", "Delete"]]),
    (2, True, [["U1", "U2"], ["V1", "V2"], ["Reroll", "Remix", "Continue from here", "Delete"]]),
    (4, False, [["V1", "V2", "V3", "V4"], ["Reroll", "Remix", "Continue from here", "Delete"]]),
])
def test_each_image_gets_its_own_actions(images, upscale, expected):
    view = result_view(JOB, images=images, upscale=upscale)
    assert rows(view) == expected
    components = view.to_components()
    assert len(components) <= 5 and all(len(row["components"]) <= 5 for row in components)
    ids = [c["custom_id"] for row in components for c in row["components"]]
    assert len(set(ids)) == len(ids) and max(map(len, ids)) <= 100


def test_failed_and_describe_views():
    assert rows(result_view(JOB, failed=True)) == [["Reroll"]]
    assert [i.item.custom_id for i in describe_view(JOB).children] == [f"nb:imagine:{JOB}", f"nb:delete:{JOB}"]


@pytest.mark.parametrize("custom_id, parsed", [
    (f"nb:upscale:{JOB}:3", ("upscale", JOB, "3")), (f"nb:vary:{JOB}", ("vary", JOB, None)),
    (f"nb:4k:{JOB}", ("4k", JOB, None)),  # the old job-level 4K button of messages posted before
    (f"nb:reroll:{JOB}", ("reroll", JOB, None)),
])
def test_custom_ids_old_and_new_are_recognised(custom_id, parsed):
    match = ActionButton.__discord_ui_compiled_template__.fullmatch(custom_id)
    assert match is not None and (match["action"], match["job"], match["index"]) == parsed
