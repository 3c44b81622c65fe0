"""Message bodies as Discord receives and stores them: JSON/multipart parsing, Discord's limits with
Discord's error codes, stored attachments with signed CDN URLs, mentions and component ids."""
from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
import mimetypes
import re
import time
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .discord_state import MessageFlags, StoredFile, World, iso


class DiscordError(Exception):
    """An API error in Discord's JSON shape: {"message": ..., "code": ...[, "errors": ...]}."""

    def __init__(self, status: int, code: int, message: str, errors: dict | None = None,
                 headers: dict[str, str] | None = None, body: dict | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors
        self.headers = headers or {}
        self.body = body

    def payload(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def form_error(path: tuple[str, ...], code: str, message: str) -> DiscordError:
    """400 50035 Invalid Form Body with the nested `errors` structure Discord returns."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")
TOO_LARGE = (413, 40005, "Request entity too large")


@dataclass
class Upload:
    """One file part of a multipart request."""
    field: str
    filename: str
    data: bytes
    index: int


async def read_body(request: web.Request) -> tuple[dict[str, Any], list[Upload]]:
    """JSON body, or multipart with `payload_json` plus `files[n]` parts (what discord.py sends)."""
    ctype = request.content_type
    if ctype.startswith("multipart/"):
        payload: dict[str, Any] = {}
        uploads: list[Upload] = []
        reader = await request.multipart()
        async for part in reader:
            name = part.name or ""
            if part.filename is not None:
                match = re.fullmatch(r"files?\[(\d+)\]", name)
                index = int(match.group(1)) if match else len(uploads)
                uploads.append(Upload(name, part.filename, bytes(await part.read(decode=False)), index))
            elif name == "payload_json":
                payload.update(json.loads(await part.text()))
            else:  # plain form fields (content=..., etc.) are accepted by Discord too
                payload[name] = await part.text()
        return payload, uploads
    if ctype == "application/x-www-form-urlencoded":
        form = await request.post()
        payload = json.loads(str(form["payload_json"])) if "payload_json" in form else {}
        payload.update({k: str(v) for k, v in form.items() if k != "payload_json"})
        return payload, []
    raw = await request.read()
    if not raw:
        return {}, []
    try:
        return json.loads(raw), []
    except ValueError:
        raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None


def check_message(world: World, body: dict[str, Any], uploads: list[Upload], *, size_limit: int,
                  creating: bool, path: tuple[str, ...] = (), faults: Any = None) -> None:
    """Discord's message limits, checked in the order Discord reports them."""
    settings = world.settings
    if len(uploads) > settings.max_files or any(len(u.data) > size_limit for u in uploads):
        raise DiscordError(*TOO_LARGE)
    if faults is not None and uploads and faults.take_upload_rejection([len(u.data) for u in uploads]):
        raise DiscordError(*TOO_LARGE)
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise form_error(path + ("content",), "STRING_TYPE_CONVERT", "Could not interpret value as string.")
    if content and len(content) > settings.max_content:
        raise form_error(path + ("content",), "BASE_TYPE_MAX_LENGTH",
                         f"Must be {settings.max_content} or fewer in length.")
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        raise form_error(path + ("embeds",), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in (("title", 256), ("description", 4096)):
            if len(embed.get(key) or "") > limit:
                raise form_error(path + ("embeds", str(i), key), "BASE_TYPE_MAX_LENGTH",
                                 f"Must be {limit} or fewer in length.")
            total += len(embed.get(key) or "")
        for field in embed.get("fields") or []:
            total += len(field.get("name") or "") + len(field.get("value") or "")
        total += len((embed.get("footer") or {}).get("text") or "") + len((embed.get("author") or {}).get("name") or "")
    if total > 6000:
        raise form_error(path + ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    from .discord_components import check_components  # it builds its errors with form_error, above
    check_components(body, path)
    if creating and not (content or embeds or uploads or body.get("components") or body.get("sticker_ids")
                         or body.get("poll") or body.get("attachments")):
        raise DiscordError(400, 50006, "Cannot send an empty message")


# ---- attachments ---------------------------------------------------------------------------------

def clean_filename(name: str) -> str:
    """Discord replaces spaces and drops characters it does not keep in CDN file names."""
    name = name.replace(" ", "_")
    name = re.sub(r"[^A-Za-z0-9._-]", "", name) or "unknown"
    return name


def image_info(data: bytes) -> tuple[str | None, int | None, int | None]:
    """(mime, width, height) if Pillow recognises the bytes as an image (header only, bombs included)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is in requirements
        return None, None, None
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # report a decompression bomb's size like Discord would, never decode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return Image.MIME.get(img.format or ""), img.width, img.height
    except Exception:
        return None, None, None
    finally:
        Image.MAX_IMAGE_PIXELS = old


@dataclass(frozen=True)
class ExternalAttachment:
    """An attachment object whose URL points outside the fake CDN. Discord never sends one (it
    stores every upload on its own CDN); a test forges one to prove the bot fetches attachment bytes
    only from Discord's hosts. Use it as a slash-command attachment option value or in `say(files=)`."""

    url: str
    filename: str = "image.png"
    size: int = 1024
    content_type: str = "image/png"
    width: int | None = 64
    height: int | None = 64

    def payload(self, world: World) -> dict[str, Any]:
        att: dict[str, Any] = {"id": str(world.snowflake()), "filename": self.filename, "size": self.size,
                               "url": self.url, "proxy_url": self.url, "content_type": self.content_type}
        if self.width is not None:
            att.update({"width": self.width, "height": self.height})
        return att


class Cdn:
    """Stores uploaded bytes and mints signed URLs the fake serves back, like cdn.discordapp.com."""

    def __init__(self, world: World, secret: bytes = b"fake-discord-cdn") -> None:
        self.world = world
        self.secret = secret
        self.link_lifetime = 24 * 3600

    def signature(self, path: str, ex: str, is_: str) -> str:
        return hmac.new(self.secret, f"{path}|{ex}|{is_}".encode(), hashlib.sha256).hexdigest()

    def url(self, path: str, *, proxy: bool = False) -> str:
        now = int(time.time())
        ex, is_ = format(now + self.link_lifetime, "x"), format(now, "x")
        base = self.world.cdn_base + ("/media" if proxy else "")
        return f"{base}{path}?ex={ex}&is={is_}&hm={self.signature(path, ex, is_)}&"

    def verify(self, path: str, query: Any) -> bool:
        if not self.world.settings.signed_urls:
            return True
        ex, is_, hm = query.get("ex", ""), query.get("is", ""), query.get("hm", "")
        if not (ex and is_ and hm) or not hmac.compare_digest(hm, self.signature(path, ex, is_)):
            return False
        try:
            return int(ex, 16) >= int(time.time())
        except ValueError:
            return False

    def store(self, data: bytes, filename: str, *, channel_id: int, description: str | None = None,
              ephemeral_for: int | None = None, spoiler: bool = False) -> dict[str, Any]:
        """Keep the bytes and return Discord's attachment object for them."""
        world = self.world
        att_id = world.snowflake()
        filename = clean_filename(("SPOILER_" if spoiler else "") + filename)
        mime, width, height = image_info(data)
        content_type = mimetypes.guess_type(filename)[0] or mime or "application/octet-stream"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        if ephemeral_for is not None:  # slash-command option uploads live under ephemeral-attachments
            path = f"/ephemeral-attachments/{world.application_id}/{ephemeral_for}/{quote(filename)}"
        else:
            path = f"/attachments/{channel_id}/{att_id}/{quote(filename)}"
        world.files[att_id] = StoredFile(att_id, filename, data, content_type, width, height, path)
        att: dict[str, Any] = {
            "id": str(att_id), "filename": filename, "size": len(data), "url": self.url(path),
            "proxy_url": self.url(path, proxy=True), "content_type": content_type,
        }
        if width is not None:
            att.update({"width": width, "height": height, "placeholder": "", "placeholder_version": 1})
        if description:
            att["description"] = description
        if ephemeral_for is not None:
            att["ephemeral"] = True
        return att

    def lookup(self, path: str) -> StoredFile | None:
        for stored in self.world.files.values():
            if stored.path == path or quote(path) == stored.path or path == stored.path.replace("%20", " "):
                return stored
        return None


def build_attachments(cdn: Cdn, channel_id: int, body: dict[str, Any], uploads: list[Upload],
                      existing: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """New attachments from uploads, plus kept ones on edit: `attachments` is the keep-list when present."""
    by_index = {u.index: u for u in uploads}
    listed = body.get("attachments")
    existing_by_id = {a["id"]: a for a in existing or []}
    result: list[dict[str, Any]] = []
    used: set[int] = set()
    for entry in listed or []:
        key = str(entry.get("id"))
        if key in existing_by_id:
            result.append(existing_by_id[key])
            continue
        try:
            upload = by_index.get(int(key))
        except ValueError:
            upload = None
        if upload is None:
            if existing is None:
                raise form_error(("attachments", "0", "id"), "ATTACHMENT_NOT_FOUND", "Attachment not found")
            continue  # an unknown id on edit simply drops that attachment
        used.add(upload.index)
        name = entry.get("filename") or upload.filename
        result.append(cdn.store(upload.data, name, channel_id=channel_id, description=entry.get("description")))
    if listed is None and existing:
        result.extend(existing)  # edits without a keep-list keep what was there
    for upload in uploads:
        if upload.index not in used:
            result.append(cdn.store(upload.data, upload.filename, channel_id=channel_id))
    return result


# ---- message objects -------------------------------------------------------------------------------

USER_MENTION = re.compile(r"<@!?(\d+)>")
ROLE_MENTION = re.compile(r"<@&(\d+)>")


def mentions(world: World, content: str, allowed: dict[str, Any] | None) -> tuple[list, list, bool]:
    """Who gets pinged: content mentions filtered by allowed_mentions (absent = parse everything)."""
    if allowed is None:
        parse, users, roles = {"users", "roles", "everyone"}, [], []
    else:
        parse = set(allowed.get("parse") or [])
        users = [str(u) for u in allowed.get("users") or []]
        roles = [str(r) for r in allowed.get("roles") or []]
    user_ids = [u for u in dict.fromkeys(USER_MENTION.findall(content)) if int(u) in world.users]
    role_ids = [r for r in dict.fromkeys(ROLE_MENTION.findall(content)) if int(r) in world.roles]
    pinged_users = [copy.deepcopy(world.users[int(u)]) for u in user_ids if "users" in parse or u in users]
    pinged_roles = [r for r in role_ids if "roles" in parse or r in roles]
    everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
    return pinged_users, pinged_roles, everyone


def number_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Discord gives every component a numeric `id` (per message) when the sender did not."""
    counter = iter(range(1, 10_000))
    used = set()

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            if "id" in item:
                used.add(item["id"])
        for item in items:
            if "id" not in item:
                item["id"] = next(i for i in counter if i not in used)
            for key in ("components",):
                if isinstance(item.get(key), list):
                    walk(item[key])
            for key in ("component", "accessory"):
                if isinstance(item.get(key), dict):
                    walk([item[key]])

    components = copy.deepcopy(components)
    walk(components)
    return components


def render_embeds(embeds: list[dict[str, Any]], attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rich embeds as stored: type filled in, attachment://name images resolved to the CDN URL."""
    by_name = {a["filename"]: a for a in attachments}
    out = []
    for embed in copy.deepcopy(embeds):
        embed.setdefault("type", "rich")
        for key in ("image", "thumbnail"):
            media = embed.get(key)
            if media and str(media.get("url", "")).startswith("attachment://"):
                att = by_name.get(media["url"][len("attachment://"):])
                if att:
                    media.update({"url": att["url"], "proxy_url": att["proxy_url"],
                                  "width": att.get("width"), "height": att.get("height")})
        out.append(embed)
    return out


def new_message(world: World, *, channel_id: int, author_id: int, body: dict[str, Any],
                attachments: list[dict[str, Any]], type_: int = 0, extra: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """A message object in Discord's REST shape (no guild_id/member: the gateway adds those)."""
    content = body.get("content") or ""
    users, roles, everyone = mentions(world, content, body.get("allowed_mentions"))
    flags = int(body.get("flags") or 0) & (MessageFlags.EPHEMERAL | MessageFlags.SUPPRESS_NOTIFICATIONS
                                            | MessageFlags.IS_COMPONENTS_V2 | (1 << 2))
    data: dict[str, Any] = {
        "id": str(world.snowflake()), "channel_id": str(channel_id), "type": type_,
        "author": copy.deepcopy(world.users[author_id]), "content": content, "timestamp": iso(),
        "edited_timestamp": None, "tts": bool(body.get("tts")), "mention_everyone": everyone,
        "mentions": users, "mention_roles": roles, "attachments": attachments,
        "embeds": render_embeds(body.get("embeds") or [], attachments),
        "components": number_components(body.get("components") or []), "pinned": False, "flags": flags,
    }
    if body.get("nonce") is not None:
        data["nonce"] = body["nonce"]
    if body.get("poll"):
        data["poll"] = body["poll"]
    if world.is_thread(channel_id):
        data["position"] = world.channels[channel_id]["total_message_sent"]
    if extra:
        data.update(extra)
    return data


def apply_edit(cdn: Cdn, data: dict[str, Any], body: dict[str, Any], uploads: list[Upload]) -> dict[str, Any]:
    """PATCH semantics: only the fields present change; attachments follow the keep-list rules."""
    world = cdn.world
    data = copy.deepcopy(data)
    if "content" in body:
        data["content"] = body["content"] or ""
        users, roles, everyone = mentions(world, data["content"], body.get("allowed_mentions"))
        data.update({"mentions": users, "mention_roles": roles, "mention_everyone": everyone})
    if "attachments" in body or uploads:
        data["attachments"] = build_attachments(cdn, int(data["channel_id"]), body, uploads, data["attachments"])
    if "embeds" in body:
        data["embeds"] = render_embeds(body["embeds"] or [], data["attachments"])
    if "components" in body:
        data["components"] = number_components(body["components"] or [])
    if "flags" in body and body["flags"] is not None:  # only SUPPRESS_EMBEDS may change on edit
        data["flags"] = (data["flags"] & ~(1 << 2)) | (int(body["flags"]) & (1 << 2))
    data["flags"] &= ~MessageFlags.LOADING
    data["edited_timestamp"] = iso()
    return data
