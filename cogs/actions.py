"""New jobs built from a stored one, for the buttons on results: Reroll, Remix (a Reroll with an edited
prompt), per image Vary and Upscale, and Imagine this (under a /describe answer)."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import discord

from core.jobs import JobSpec, Options
from core.models import can_upscale, largest_size
from core.quota import LimitError

from .access import denial
from .delivery import DiscordDelivery
from .replies import ChannelReply, InteractionReply, refuse

if TYPE_CHECKING:
    from bot import ImageBot

GONE = "That result is no longer stored, so it cannot be reused."


def vary_prompt(index: int, images: int) -> str:
    which = f"image {index} of the {images} (the attached one)" if images > 1 else "this image"
    return (f"Make a variation of {which}: keep the subject and style, change the details and "
            "composition.")


def upscale_prompt(index: int, images: int, size: str) -> str:
    which = f"image {index} of the {images} (the attached one)" if images > 1 else "the attached image"
    return (f"Upscale {which} to {size}: render this exact picture again at a higher resolution. Keep the "
            "composition, subject, colours and every detail where they are; only add fine detail and sharpness.")


async def start_from_stored_job(bot: ImageBot, interaction: discord.Interaction, action: str, job_id: str,
                                index: int = 1, prompt: str | None = None):
    """Start the job a button asks for; returns it (None when the member was told why not)."""
    async def say(text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True)

    reason = denial(bot, interaction.user, interaction.channel)
    if reason:
        return await say(reason)
    record = await bot.store.job(job_id)
    if record is None or record.conversation_id is None:
        return await say(GONE)
    conv = await bot.store.conversation(record.conversation_id)
    user_turn = await bot.store.turn(record.user_turn_id) if record.user_turn_id else None
    model_turn = await bot.store.turn(record.model_turn_id) if record.model_turn_id else None
    if conv is None or user_turn is None:
        return await say(GONE)
    options = Options.from_dict(record.options)
    subject = record.options.get("subject") or user_turn.text  # the member's words behind a Vary or Upscale
    spec = JobSpec(kind=action, user=interaction.user, guild_id=interaction.guild_id, prompt=user_turn.text,
                   images=user_turn.images, options=options, conversation=conv, parent=user_turn.parent_id,
                   title=record.options.get("title") or "", subject=subject)
    if action == "remix":
        spec = replace(spec, prompt=prompt or user_turn.text, title="", subject="")
    elif action in ("vary", "upscale"):
        if model_turn is None or not 1 <= index <= len(model_turn.images):
            return await say("That image is no longer stored, so it cannot be reused.")
        images, chosen = len(model_turn.images), model_turn.images[index - 1]
        # The chosen image itself is the input, after the result it belongs to in the conversation.
        spec = replace(spec, images=(chosen,), parent=model_turn.id, options=replace(options, count=1))
        which = f"image {index}" if images > 1 else "the image"
        if action == "vary":
            spec = replace(spec, prompt=vary_prompt(index, images), title=f"{subject} · a variation of {which}")
        else:
            provider = model_turn.provider if model_turn.provider in bot.providers.names else options.provider
            if not can_upscale(bot.providers, provider, options.resolution):
                return await say(_cannot_upscale(bot, provider, options.resolution))
            size = largest_size(bot.providers, provider)
            spec = replace(spec, prompt=upscale_prompt(index, images, size),
                           title=f"{subject} · {which} upscaled to {size}",
                           options=replace(spec.options, resolution=size, provider=provider))
    elif action == "imagine":  # under a /describe answer: draw the prompt the model wrote
        if model_turn is None or not model_turn.text:
            return await say(GONE)
        spec = replace(spec, kind="imagine", prompt=model_turn.text[:bot.config.max_prompt_chars], images=(),
                       title="", subject="", conversation=None, parent=None, options=replace(options, count=1))
    return await _submit(bot, interaction, spec)


def _cannot_upscale(bot: ImageBot, provider: str | None, delivered: str | None) -> str:
    others = [n for n in bot.providers.names if n != provider and can_upscale(bot.providers, n, delivered)]
    text = "This image is already as large as its model renders, so it cannot be upscaled here."
    if others:
        model = bot.providers.get(others[0]).config.model
        text += (f" The provider `{others[0]}` ({model}) renders up to {largest_size(bot.providers, others[0])}: "
                 f"use /edit with this image and provider:{others[0]}.")
    return text


async def _submit(bot: ImageBot, interaction: discord.Interaction, spec: JobSpec):
    conv = spec.conversation
    thread = bot.get_channel(conv.channel_id) if conv is not None and conv.channel_id else None
    # A click on the thread's starter message is answered inside the thread, privately pointed to.
    elsewhere = thread is not None and thread.id != interaction.channel_id
    async with bot.jobs.place(conv.channel_id if conv is not None else None) as ticket:
        await interaction.response.defer(thinking=True, ephemeral=elsewhere)  # before the reservation
        try:
            await bot.jobs.admit(ticket, interaction.user, interaction.guild_id, spec.kind, spec.options)
        except LimitError as exc:
            if elsewhere:
                await interaction.edit_original_response(content=str(exc))
            else:
                await refuse(interaction, str(exc))
            return None
        if elsewhere:
            await interaction.edit_original_response(content=f"Working on it in {thread.mention}.")
            reply = ChannelReply(thread, mention=interaction.user.mention)
        else:
            reply = InteractionReply(interaction)
        delivery = DiscordDelivery(bot, reply, interaction.user.mention, interaction.user.id)
        return await bot.jobs.submit(ticket, spec, delivery)
