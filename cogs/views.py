"""The buttons on status and result messages, persistent across restarts.

Each button is a DynamicItem whose custom_id names an action, a stored job and, for per-image
actions, the image (`nb:reroll:<job>`, `nb:upscale:<job>:2`), so one class serves every message,
before and after a restart: everything it needs is in the store. Pressing one hands it to the
Buttons cog (cogs/buttons.py), found through the bot.

A result of up to four images uses at most three of Discord's five rows of five buttons:
    U1 U2 U3 U4          (Upscale, when the model renders a larger size)
    V1 V2 V3 V4          (Vary)
    Reroll Remix Continue from here Delete
A single image shows "Upscale" and "Vary" without numbers.
"""
from __future__ import annotations

import discord

LABELS = {"reroll": ("Reroll", "🎲"), "remix": ("Remix", "✏️"), "vary": ("Vary", "🔀"),
          "upscale": ("Upscale", "🔍"), "branch": ("Continue from here", "↪️"), "delete": ("Delete", "🗑️"),
          "imagine": ("Imagine this", "🎨")}
SHORT = {"upscale": "U", "vary": "V"}  # Midjourney's U1-U4 / V1-V4
# `4k` is the old job-level "4K" button: old messages keep working, as an upscale of their first image.
ACTIONS = "reroll|remix|vary|upscale|4k|branch|delete|imagine"


def result_view(job_id: str, *, images: int = 1, upscale: bool = False, failed: bool = False) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if failed:
        view.add_item(ActionButton("reroll", job_id))
        return view
    images = min(images, 5)  # one row of five; /imagine asks for at most four
    per_image = [a for a in ("upscale", "vary") if a != "upscale" or upscale]
    row = 0
    for action in per_image:
        for index in range(1, images + 1):
            view.add_item(ActionButton(action, job_id, index if images > 1 else None, row=row))
        row += images > 1  # a single image's Upscale and Vary share a row
    row += images == 1
    for action in ("reroll", "remix", "branch", "delete"):
        view.add_item(ActionButton(action, job_id, row=row))
    return view


def describe_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ActionButton("imagine", job_id))
    view.add_item(ActionButton("delete", job_id))
    return view


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


class ActionButton(discord.ui.DynamicItem[discord.ui.Button],
                   template=rf"nb:(?P<action>{ACTIONS}):(?P<job>[0-9a-f]+)(?::(?P<index>[1-9]))?"):
    def __init__(self, action: str, job_id: str, index: int | None = None, *, row: int | None = None) -> None:
        label, emoji = LABELS["upscale" if action == "4k" else action]
        if index is not None:
            label, emoji = f"{SHORT[action]}{index}", None
        custom_id = f"nb:{action}:{job_id}" + (f":{index}" if index is not None else "")
        style = discord.ButtonStyle.danger if action == "delete" else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label, emoji=emoji, custom_id=custom_id, style=style, row=row))
        self.action, self.job_id, self.index = action, job_id, index

    @classmethod
    async def from_custom_id(cls, interaction, item, match):
        return cls(match["action"], match["job"], int(match["index"]) if match["index"] else None)

    async def callback(self, interaction: discord.Interaction) -> None:
        action, index = self.action, self.index
        if action == "4k":
            action, index = "upscale", 1
        await interaction.client.get_cog("Buttons").press(interaction, action, self.job_id, index or 1)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=r"nb:cancel:(?P<job>[0-9a-f]+)"):
    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Cancel", emoji="✖️", custom_id=f"nb:cancel:{job_id}",
                                           style=discord.ButtonStyle.danger))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match):
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.get_cog("Buttons").cancel(interaction, self.job_id)
