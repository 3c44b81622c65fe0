"""The buttons on status and result messages, persistent across restarts.

Each button is a DynamicItem whose custom_id names an action and a stored job (`nb:reroll:<job>`),
so one class serves every message, before and after a restart: everything it needs is in the
store. Pressing one hands it to the Buttons cog (cogs/buttons.py), found through the bot.
"""
from __future__ import annotations

import discord

LABELS = {"reroll": ("Reroll", "🎲"), "vary": ("Vary", "🔀"), "4k": ("4K", "🔍"), "branch": ("Continue from here", "↪️")}


def result_view(job_id: str, *, failed: bool = False) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in (("reroll",) if failed else ("reroll", "vary", "4k", "branch")):
        view.add_item(ActionButton(action, job_id))
    return view


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


class ActionButton(discord.ui.DynamicItem[discord.ui.Button], template=r"nb:(?P<action>reroll|vary|4k|branch):(?P<job>[0-9a-f]+)"):
    def __init__(self, action: str, job_id: str) -> None:
        label, emoji = LABELS[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, custom_id=f"nb:{action}:{job_id}",
                                           style=discord.ButtonStyle.secondary))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match):
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.get_cog("Buttons").run_action(interaction, self.action, self.job_id)


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
