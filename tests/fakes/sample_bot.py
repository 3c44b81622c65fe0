"""A small, ordinary discord.py bot used only by the test bed's own tests (tests/e2e/test_testbed.py).

It knows nothing about the fake: the test bed redirects it through sitecustomize, exactly as it does the
real bot. `/stress` breaks one of Discord's rules on purpose and reports the error it got back.
"""
from __future__ import annotations

import asyncio
import io
import os
import signal
import struct
import zlib

import discord
from discord import app_commands
from discord.ext import commands
from discord.webhook.async_ import async_context, interaction_response_params


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A solid-colour PNG without Pillow."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Again(discord.ui.View):
    """Persistent: timeout=None and a fixed custom_id, registered again in setup_hook after a restart."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="sample:again", style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.send_message(f"again for {interaction.message.id} from pid {os.getpid()}")


class Describe(discord.ui.Modal, title="Describe it"):
    prompt = discord.ui.TextInput(label="Prompt", custom_id="prompt", max_length=200)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"modal said: {self.prompt.value}")


# SAMPLE_SHARD_COUNT (and SAMPLE_SHARD_IDS, e.g. "0,1") run it as an AutoShardedBot with those shards.
SHARD_COUNT = int(os.environ.get("SAMPLE_SHARD_COUNT") or 0)
SHARD_IDS = [int(n) for n in os.environ.get("SAMPLE_SHARD_IDS", "").split(",") if n.strip()] or None


class SampleBot(commands.AutoShardedBot if SHARD_COUNT else commands.Bot):
    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        shards = {"shard_count": SHARD_COUNT, "shard_ids": SHARD_IDS} if SHARD_COUNT else {}
        super().__init__(command_prefix="!", intents=intents, **shards)

    async def setup_hook(self) -> None:
        self.add_view(Again())
        await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        if not message.author.bot and message.content == "whoami":  # which process and shard got it
            shard = message.guild.shard_id if message.guild else 0
            await message.channel.send(f"shard {shard} pid {os.getpid()}")
            return
        if message.author.bot or not isinstance(message.channel, discord.Thread):
            return
        sizes = [len(await a.read()) for a in message.attachments]
        await message.channel.send(f"echo: {message.content} {sizes}")


bot = SampleBot()


@bot.tree.command()
@app_commands.describe(prompt="What to draw", image="Optional picture to send back")
async def draw(interaction: discord.Interaction, prompt: str, image: discord.Attachment | None = None) -> None:
    """Defers, then edits the original response with a file and a persistent button."""
    await interaction.response.defer(thinking=True)
    data = await image.read() if image else png(4, 3, (255, 0, 0))
    await interaction.edit_original_response(content=f"drew {prompt}", view=Again(),
                                             attachments=[discord.File(io.BytesIO(data), "out.png")])


@bot.tree.command()
async def thread(interaction: discord.Interaction, name: str) -> None:
    """Answers, then starts a thread on the answer and posts in it."""
    await interaction.response.send_message(f"starting {name}")
    message = await interaction.original_response()
    created = await interaction.channel.create_thread(name=name, message=message)
    await created.send("first post")


@bot.tree.command()
async def burst(interaction: discord.Interaction, count: int, threads: bool = False) -> None:
    """Posts `count` messages in the channel at once (and starts a thread on each): discord.py's pacing."""
    await interaction.response.defer()
    sent = await asyncio.gather(*(interaction.channel.send(f"burst {i}") for i in range(count)))
    if threads:
        await asyncio.gather(*(m.create_thread(name=f"burst {i}") for i, m in enumerate(sent)))
    await interaction.followup.send(f"burst of {count} done")


@bot.tree.command()
async def form(interaction: discord.Interaction) -> None:
    """Opens a modal."""
    await interaction.response.send_modal(Describe())


@bot.tree.context_menu(name="Size")
async def size(interaction: discord.Interaction, message: discord.Message) -> None:
    await interaction.response.send_message(f"{len(message.attachments)} attachments", ephemeral=True)


@bot.tree.command()
@app_commands.choices(kind=[app_commands.Choice(name=k, value=k)
                            for k in ("late", "double", "files11", "bigfile", "long", "expired")])
async def stress(interaction: discord.Interaction, kind: str, delay: float = 0.0) -> None:
    """Breaks one Discord rule on purpose and posts the status and code it got."""
    try:
        if kind == "late":
            await asyncio.sleep(delay)
            await interaction.response.send_message("too late")
        elif kind == "double":  # discord.py refuses a second response itself, so go one level lower
            await interaction.response.send_message("first")
            await async_context.get().create_interaction_response(
                interaction.id, interaction.token, session=interaction._session,
                params=interaction_response_params(4, {"content": "second"}))
        elif kind in ("files11", "bigfile"):
            await interaction.response.defer()
            if kind == "files11":
                files = [discord.File(io.BytesIO(png(1, 1, (0, 0, 0))), f"{i}.png") for i in range(11)]
            else:
                files = [discord.File(io.BytesIO(b"\0" * (interaction.filesize_limit + 1)), "big.bin")]
            await interaction.followup.send("files", files=files)
        elif kind == "long":
            await interaction.response.send_message("x" * 2001)
        elif kind == "expired":
            await interaction.response.defer()
            await asyncio.sleep(delay)
            await interaction.edit_original_response(content="too late to edit")
    except discord.HTTPException as exc:
        await interaction.channel.send(f"stress {kind}: {exc.status} {exc.code}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(bot.close()))
    discord.utils.setup_logging()
    async with bot:
        await bot.start(os.environ["DISCORD_TOKEN"])


if __name__ == "__main__":
    asyncio.run(main())
