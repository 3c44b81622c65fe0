"""Interactions: the INTERACTION_CREATE payloads Discord sends (slash commands, context menus, components,
modal submits, autocomplete) and the routes that answer them (callback, @original, followups), with
the 3-second acknowledgement, single acknowledgement and 15-minute token rules."""
from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from typing import Any

from .discord_components import check_choices
from .discord_messages import (Cdn, DiscordError, ExternalAttachment, build_attachments, check_message,
                               form_error, unknown)
from .discord_rest import NO_CONTENT, ApiRequest, Messages, Route
from .discord_state import MessageFlags, MessageRecord, World

PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
# Callback types each interaction type may answer with.
ALLOWED_CALLBACKS = {APPLICATION_COMMAND: {4, 5, 9}, MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
                     AUTOCOMPLETE: {8}, MODAL_SUBMIT: {4, 5, 6, 7}}
OPTION_TYPES = {"SUB_COMMAND": 1, "SUB_COMMAND_GROUP": 2, "STRING": 3, "INTEGER": 4, "BOOLEAN": 5, "USER": 6,
                "CHANNEL": 7, "ROLE": 8, "MENTIONABLE": 9, "NUMBER": 10, "ATTACHMENT": 11}


@dataclass
class InteractionRecord:
    id: int
    token: str
    type: int
    channel_id: int
    user_id: int
    created_at: float
    ack_deadline: float
    token_lifetime: float
    size_limit: int
    payload: dict[str, Any] = field(default_factory=dict)
    name: str = ""                      # command name or component/modal custom_id
    message_id: int | None = None       # the message a component (or the modal's button) sits on
    dispatched_at: float | None = None  # when INTERACTION_CREATE left the fake
    acked_at: float | None = None
    ack_type: int | None = None
    original_id: int | None = None      # the original response message (for 6/7: the component's message)
    loading: bool = False               # deferred with type 5 and not yet replaced
    ephemeral: bool = False
    followup_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None
    errors: list[tuple[str, int, int]] = field(default_factory=list)  # (route, status, code) refused

    @property
    def ack_latency(self) -> float | None:
        if self.acked_at is None or self.dispatched_at is None:
            return None
        return self.acked_at - self.dispatched_at


class Interactions:
    def __init__(self, world: World, gateway: Any, cdn: Cdn, messages: Messages, faults: Any) -> None:
        self.world, self.gateway, self.cdn, self.messages, self.faults = world, gateway, cdn, messages, faults
        self.records: dict[int, InteractionRecord] = {}
        self.by_token: dict[str, InteractionRecord] = {}

    def routes(self) -> list[Route]:
        R = Route
        base = "/webhooks/{application_id}/{token}"
        return [
            R("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, auth=False),
            R("GET", base + "/messages/@original", self.get_message, auth=False),
            R("PATCH", base + "/messages/@original", self.edit_message, auth=False),
            R("DELETE", base + "/messages/@original", self.delete_message, auth=False),
            R("POST", base, self.followup, auth=False),
            R("GET", base + "/messages/{message_id}", self.get_message, auth=False),
            R("PATCH", base + "/messages/{message_id}", self.edit_message, auth=False),
            R("DELETE", base + "/messages/{message_id}", self.delete_message, auth=False),
        ]

    # ---- creating interactions (driver side) -------------------------------------------------------

    def create(self, type_: int, data: dict[str, Any], *, user_id: int, channel_id: int,
               message: MessageRecord | None = None, interaction_id: int | None = None,
               ack_deadline: float | None = None, token_lifetime: float | None = None,
               size_limit: int | None = None) -> InteractionRecord:
        """Build the INTERACTION_CREATE payload Discord would send and dispatch it to the bot."""
        world = self.world
        settings = world.settings
        rec = InteractionRecord(
            id=interaction_id or world.snowflake(), token="aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48),
            type=type_, channel_id=channel_id, user_id=user_id, created_at=world.clock.now(),
            ack_deadline=settings.ack_deadline if ack_deadline is None else ack_deadline,
            token_lifetime=settings.token_lifetime if token_lifetime is None else token_lifetime,
            size_limit=size_limit if size_limit is not None else max(
                settings.attachment_size_limit, world.filesize_limit() if world.guild_of(channel_id) else 0),
            name=data.get("name") or data.get("custom_id") or "",
            message_id=message.id if message else None)
        guild_id = world.guild_of(channel_id)
        payload: dict[str, Any] = {
            "id": str(rec.id), "application_id": str(world.application_id), "type": type_, "token": rec.token,
            "version": 1, "data": data, "channel_id": str(channel_id),
            "channel": world.channel_payload(channel_id, for_user=user_id),
            "locale": "en-US", "app_permissions": str(world.permissions_in(world.bot_id, channel_id)),
            "entitlements": [], "entitlement_sku_ids": [], "attachment_size_limit": rec.size_limit,
        }
        if guild_id:
            payload.update({"guild_id": str(guild_id), "guild_locale": "en-US",
                            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
                            "member": world.member_payload(user_id, channel_id=channel_id),
                            "authorizing_integration_owners": {"0": str(guild_id)}, "context": 0})
        else:
            payload.update({"user": copy.deepcopy(world.users[user_id]),
                            "authorizing_integration_owners": {"0": "0"}, "context": 1})
        if message is not None:
            payload["message"] = copy.deepcopy(message.data)
        rec.payload = payload
        self.records[rec.id] = rec
        self.by_token[rec.token] = rec

        def sent() -> None:
            rec.dispatched_at = world.clock.now()
            world.notify()
        self.gateway.dispatch("INTERACTION_CREATE", copy.deepcopy(payload), on_sent=sent)
        return rec

    def find_command(self, name: str, channel_id: int, type_: int = 1) -> dict[str, Any]:
        world = self.world
        scopes = []
        if world.guild_of(channel_id):
            scopes.append(world.guild_commands.get(world.guild_of(channel_id), []))
        scopes.append(world.global_commands)
        for commands in scopes:
            for cmd in commands:
                if cmd["name"] == name and cmd["type"] == type_:
                    if not world.guild_of(channel_id) and cmd.get("contexts") is not None \
                            and 1 not in cmd["contexts"]:
                        continue
                    return cmd
        known = [c["name"] for scope in scopes for c in scope]
        raise LookupError(f"no registered command {name!r} (type {type_}) here; registered: {known}")

    def command_data(self, path: str, options: dict[str, Any], *, channel_id: int, interaction_id: int,
                     type_: int = 1, focused: str | None = None, validate: bool = True) -> dict[str, Any]:
        """data for a slash command: typed options from the registered schema, plus `resolved`.
        validate=False skips Discord's checks of choices and min/max (a forged interaction)."""
        words = path.split()
        cmd = self.find_command(words[0], channel_id, type_)
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": cmd["type"]}
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        resolved: dict[str, dict[str, Any]] = {}
        schema, target = cmd.get("options") or [], data
        for word in words[1:]:  # walk sub-command groups / sub-commands
            sub = next((o for o in schema if o["name"] == word and o["type"] in (1, 2)), None)
            if sub is None:
                raise LookupError(f"{path!r}: no sub-command {word!r}")
            node = {"name": word, "type": sub["type"], "options": []}
            target.setdefault("options", []).append(node)
            schema, target = sub.get("options") or [], node
        opts = target.setdefault("options", [])
        for name, value in options.items():
            spec = next((o for o in schema if o["name"] == name), None)
            if spec is None:
                raise LookupError(f"{path!r} has no option {name!r}; options: {[o['name'] for o in schema]}")
            if name == focused:  # autocomplete: the partial text as typed, not validated
                opts.append({"name": name, "type": spec["type"], "value": str(value), "focused": True})
                continue
            opts.append({"name": name, "type": spec["type"],
                         "value": self.option_value(spec, value, channel_id, interaction_id, resolved,
                                                    validate=validate)})
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in options]
        if missing and focused is None:
            raise ValueError(f"{path!r}: required options missing: {missing}")
        if resolved:
            data["resolved"] = resolved
        return data

    def option_value(self, spec: dict[str, Any], value: Any, channel_id: int, interaction_id: int,
                     resolved: dict[str, dict[str, Any]], *, validate: bool = True) -> Any:
        world, kind = self.world, spec["type"]
        if kind == 11:  # attachment: value is the (filename, bytes) the user uploaded with the command
            if isinstance(value, ExternalAttachment):  # forged: a URL outside the CDN
                att = value.payload(world)
                resolved.setdefault("attachments", {})[att["id"]] = att
                return att["id"]
            filename, data = value
            att = self.cdn.store(data, filename, channel_id=channel_id, ephemeral_for=interaction_id)
            resolved.setdefault("attachments", {})[att["id"]] = att
            return att["id"]
        if kind in (6, 9) and not (kind == 9 and self._is_role(value)):
            user_id = world.resolve(value, "user")
            resolved.setdefault("users", {})[str(user_id)] = copy.deepcopy(world.users[user_id])
            if user_id in world.members and world.guild_of(channel_id):
                member = world.member_payload(user_id, channel_id=channel_id, with_user=False)
                resolved.setdefault("members", {})[str(user_id)] = member
            return str(user_id)
        if kind in (8, 9):
            role_id = world.resolve(value, "role")
            resolved.setdefault("roles", {})[str(role_id)] = copy.deepcopy(world.roles[role_id])
            return str(role_id)
        if kind == 7:
            target = world.resolve(value, "channel")
            ch = world.channel_payload(target, for_user=world.bot_id)
            keep = ("id", "name", "type", "permissions", "parent_id", "thread_metadata", "guild_id")
            resolved.setdefault("channels", {})[str(target)] = {k: v for k, v in ch.items() if k in keep}
            return str(target)
        converted = {3: str, 4: int, 5: bool, 10: float}[kind](value)
        if not validate:
            return converted
        choices = spec.get("choices")
        if choices and converted not in [c["value"] for c in choices]:
            raise ValueError(f"option {spec['name']!r}: {value!r} is not one of {[c['value'] for c in choices]}")
        low, high = spec.get("min_value"), spec.get("max_value")
        if kind in (4, 10) and ((low is not None and converted < low) or (high is not None and converted > high)):
            raise ValueError(f"option {spec['name']!r}: {value!r} is outside {low}..{high}")
        return converted

    def _is_role(self, value: Any) -> bool:
        try:
            return self.world.resolve(value, "role") in self.world.roles
        except KeyError:
            return False

    # ---- helpers for the routes -------------------------------------------------------------------

    def refuse(self, rec: InteractionRecord | None, req: ApiRequest, err: DiscordError) -> DiscordError:
        if rec is not None:
            rec.errors.append((req.route, err.status, err.code))
            self.world.notify()
        return err

    def for_webhook(self, req: ApiRequest) -> InteractionRecord:
        if req.int("application_id") != self.world.application_id:
            raise unknown("Webhook", 10015)
        rec = self.by_token.get(req.params["token"])
        if rec is None:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        if self.world.clock.now() > rec.created_at + rec.token_lifetime:
            raise self.refuse(rec, req, DiscordError(401, 50027, "Invalid Webhook Token"))
        return rec

    def extra(self, rec: InteractionRecord, *, followup: bool = False) -> tuple[int, dict[str, Any]]:
        """Message type and the interaction fields Discord puts on messages made through interactions."""
        world = self.world
        user = copy.deepcopy(world.users[rec.user_id])
        meta: dict[str, Any] = {"id": str(rec.id), "type": rec.type, "user": user,
                                "authorizing_integration_owners": rec.payload["authorizing_integration_owners"]}
        extra: dict[str, Any] = {"webhook_id": str(world.application_id),
                                 "application_id": str(world.application_id), "interaction_metadata": meta}
        type_ = 19
        if rec.type == APPLICATION_COMMAND:
            ctype = rec.payload["data"].get("type", 1)
            meta.update({"name": rec.name, "command_type": ctype})
            extra["interaction"] = {"id": str(rec.id), "type": rec.type, "name": rec.name, "user": user}
            type_ = 20 if ctype == 1 else 23
        if rec.message_id is not None:
            meta["interacted_message_id"] = str(rec.message_id)
            if not followup:
                extra["message_reference"] = {"type": 0, "message_id": str(rec.message_id),
                                              "channel_id": str(rec.channel_id)}
        if followup and rec.original_id:
            meta["original_response_message_id"] = str(rec.original_id)
        return type_, extra

    def message_of(self, rec: InteractionRecord, req: ApiRequest) -> MessageRecord:
        if "message_id" in req.params:
            message_id = req.int("message_id")
            if message_id != rec.original_id and message_id not in rec.followup_ids:
                raise unknown("Message", 10008)
        else:
            if rec.acked_at is None:
                raise unknown("Webhook", 10015)
            if rec.original_id is None:
                raise unknown("Message", 10008)
            message_id = rec.original_id
        found = self.world.find_message(message_id)
        if found is None or found.deleted:
            raise unknown("Message", 10008)
        return found

    # ---- routes ------------------------------------------------------------------------------------

    async def callback(self, req: ApiRequest) -> Any:
        rec = self.records.get(req.int("interaction_id"))
        if rec is None or rec.token != req.params["token"]:
            raise unknown("interaction", 10062)
        try:
            return await self._callback(rec, req)
        except DiscordError as err:
            raise self.refuse(rec, req, err)

    async def _callback(self, rec: InteractionRecord, req: ApiRequest) -> Any:
        world = self.world
        now = world.clock.now()
        if rec.acked_at is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if now > rec.created_at + rec.ack_deadline:
            raise unknown("interaction", 10062)
        body, uploads = await req.body()
        ctype, data = body.get("type"), body.get("data") or {}
        if ctype not in ALLOWED_CALLBACKS.get(rec.type, set()) or (ctype in (6, 7) and rec.message_id is None):
            raise form_error(("type",), "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type")
        message: MessageRecord | None = None
        if ctype == 4:
            check_message(world, data, uploads, size_limit=rec.size_limit, creating=True, path=("data",),
                          faults=self.faults)
            type_, extra = self.extra(rec)
            attachments = build_attachments(self.cdn, rec.channel_id, data, uploads)
            message = self.messages.create(rec.channel_id, world.bot_id, data, attachments, type_=type_,
                                           extra=extra, interaction_id=rec.id)
            rec.original_id, rec.ephemeral = message.id, message.ephemeral
        elif ctype == 5:
            flags = MessageFlags.LOADING | (int(data.get("flags") or 0) & MessageFlags.EPHEMERAL)
            type_, extra = self.extra(rec)
            extra["flags"] = flags  # the "is thinking..." placeholder
            message = self.messages.create(rec.channel_id, world.bot_id, {"flags": flags}, [], type_=type_,
                                           extra=extra, interaction_id=rec.id)
            rec.original_id, rec.loading, rec.ephemeral = message.id, True, message.ephemeral
        elif ctype in (6, 7):
            rec.original_id = rec.message_id
            if ctype == 7:
                target = world.find_message(rec.message_id or 0)
                if target is None or target.deleted:
                    raise unknown("Message", 10008)
                check_message(world, data, uploads, size_limit=rec.size_limit, creating=False, path=("data",))
                message = self.messages.edit(target, data, uploads)
        elif ctype == 8:
            check_choices(data)
            rec.choices = data.get("choices") or []
        elif ctype == 9:
            title, components = data.get("title") or "", data.get("components") or []
            if not data.get("custom_id") or not 1 <= len(title) <= 45 or not 1 <= len(components) <= 5:
                raise form_error(("data",), "BASE_TYPE_BAD_LENGTH",
                                 "A modal needs a custom_id, a 1-45 character title and 1-5 components")
            rec.modal = copy.deepcopy(data)
        rec.acked_at, rec.ack_type = world.clock.now(), ctype
        world.notify()
        if req.query.get("with_response") not in ("1", "true", "True"):
            return NO_CONTENT
        info: dict[str, Any] = {"id": str(rec.id), "type": rec.type}
        if message is not None:
            info.update({"response_message_id": str(message.id), "response_message_loading": ctype == 5,
                         "response_message_ephemeral": message.ephemeral})
        result: dict[str, Any] = {"interaction": info}
        if ctype in (4, 5, 7) and message is not None:
            result["resource"] = {"type": ctype, "message": copy.deepcopy(message.data)}
        return result

    async def get_message(self, req: ApiRequest) -> Any:
        rec = self.for_webhook(req)
        try:
            return copy.deepcopy(self.message_of(rec, req).data)
        except DiscordError as err:
            raise self.refuse(rec, req, err)

    async def edit_message(self, req: ApiRequest) -> Any:
        rec = self.for_webhook(req)
        try:
            target = self.message_of(rec, req)
            body, uploads = await req.body()
            check_message(self.world, body, uploads, size_limit=rec.size_limit, creating=False,
                          faults=self.faults)
            if target.id == rec.original_id and rec.loading:
                rec.loading = False
            edited = self.messages.edit(target, body, uploads)
            return copy.deepcopy(edited.data)
        except DiscordError as err:
            raise self.refuse(rec, req, err)

    async def delete_message(self, req: ApiRequest) -> Any:
        rec = self.for_webhook(req)
        try:
            target = self.message_of(rec, req)
            rec.loading = rec.loading and target.id != rec.original_id
            self.messages.delete(target)
            return NO_CONTENT
        except DiscordError as err:
            raise self.refuse(rec, req, err)

    async def followup(self, req: ApiRequest) -> Any:
        rec = self.for_webhook(req)
        try:
            if rec.acked_at is None:
                raise unknown("Webhook", 10015)
            body, uploads = await req.body()
            check_message(self.world, body, uploads, size_limit=rec.size_limit, creating=True,
                          faults=self.faults)
            original = self.world.find_message(rec.original_id or 0)
            if rec.loading and original is not None and not original.deleted:
                # The first followup after a deferred (type 5) response replaces the "thinking" message;
                # its ephemerality comes from the defer, not from this request's flags.
                rec.loading = False
                body = dict(body)
                body.pop("flags", None)
                message = self.messages.edit(original, body, uploads)
                message.data["edited_timestamp"] = None
            else:
                type_, extra = self.extra(rec, followup=True)
                attachments = build_attachments(self.cdn, rec.channel_id, body, uploads)
                message = self.messages.create(rec.channel_id, self.world.bot_id, body, attachments, type_=type_,
                                               extra=extra, interaction_id=rec.id)
                rec.followup_ids.append(message.id)
            self.world.notify()
            if req.query.get("wait") in ("1", "true", "True"):
                return copy.deepcopy(message.data)
            return NO_CONTENT
        except DiscordError as err:
            raise self.refuse(rec, req, err)


def modal_values(modal: dict[str, Any], values: dict[str, str]) -> list[dict[str, Any]]:
    """The `components` of a MODAL_SUBMIT, mirroring the modal's own layout (action rows or labels)."""
    unknown_ids = set(values) - set(_text_inputs(modal["components"]))
    if unknown_ids:
        raise LookupError(f"modal {modal.get('custom_id')!r} has no inputs {sorted(unknown_ids)}")

    def submit(item: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": item["type"], "id": item.get("id", 0)}
        if item["type"] == 1:
            out["components"] = [submit(c) for c in item.get("components", [])]
        elif item["type"] == 18:
            out["component"] = submit(item["component"])
        elif item["type"] == 4:
            value = values.get(item["custom_id"], item.get("value") or "")
            out.update({"custom_id": item["custom_id"], "value": value})
        elif item["type"] in (3, 5, 6, 7, 8):
            out.update({"custom_id": item["custom_id"], "values": list(values.get(item["custom_id"], []))})
        else:
            return {"type": item["type"], "id": item.get("id", 0)}
        return out
    return [submit(c) for c in modal["components"]]


def _text_inputs(components: list[dict[str, Any]]) -> list[str]:
    out = []
    for c in components:
        if c.get("custom_id"):
            out.append(c["custom_id"])
        out += _text_inputs(c.get("components") or [])
        if isinstance(c.get("component"), dict):
            out += _text_inputs([c["component"]])
    return out
