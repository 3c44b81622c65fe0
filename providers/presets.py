"""Provider configuration from the environment (SPEC §3).

    PROVIDERS=mule,google                    first is the default, the rest the failover order
    PROVIDER_MULE_PRESET=mulerun             fills format, base URL, model and quirks
    PROVIDER_MULE_API_KEY=sk-...             explicit PROVIDER_<NAME>_* variables override a preset
    PROVIDER_GOOGLE_API_KEY=AIza...          a provider named like a preset uses it without _PRESET

Every problem is collected and reported at once, one line each, naming the variable.
"""
from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable

from .base import WIRE_FORMATS, ProviderConfig
from .env import parse_bool, parse_int, parse_seconds
from .errors import ConfigError
from .models import RESOLUTIONS

# What each preset fills in; see ../shared/seeds/ and research/gateways.md §0.
PRESETS: dict[str, dict[str, Any]] = {
    "mulerun": dict(format="openai_chat", base_url="https://api.mulerun.com/v1",
                    model="gemini-2.5-flash-image-preview", chat_options="prompt"),
    "mixroute": dict(format="openai_images", base_url="https://console.mixroute.io/v1",
                     model="gemini-2.5-flash-image", images_input="contents", images_options="mixroute"),
    # The YEScale seed shows no host: the base URL must be given.
    "yescale": dict(format="gemini", base_url=None,
                    model="gemini-2.5-flash-image-preview", auth="x-goog-api-key"),
    "infinityblue": dict(format="openai_chat", base_url="https://api.getinfinityblue.com/v1",
                         model="nanobanana_pro", chat_options="extra_body", chat_string_content=True),
    "google": dict(format="gemini", base_url="https://generativelanguage.googleapis.com/v1beta",
                   model="gemini-2.5-flash-image", auth="x-goog-api-key"),
    "openrouter": dict(format="openai_chat", base_url="https://openrouter.ai/api/v1",
                       model="google/gemini-2.5-flash-image", chat_options="image_config"),
    # A LiteLLM proxy (self-hosted: the base URL must be given) in front of Gemini.
    "litellm": dict(format="openai_chat", base_url=None, model="gemini-2.5-flash-image",
                    chat_options="image_config", chat_dialect="litellm"),
}

_NAME_RE = re.compile(r"^[a-z0-9_]+$")


def _parse_int(minimum: int) -> Callable[[str], int]:
    return lambda raw: parse_int(raw, minimum)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return parse


def _resolutions(raw: str) -> tuple[str, ...]:
    sizes = tuple(dict.fromkeys(part.strip().upper() for part in raw.split(",") if part.strip()))
    wrong = [s for s in sizes if s not in RESOLUTIONS]
    if not sizes or wrong:
        raise ValueError(f"must list sizes from {', '.join(RESOLUTIONS)}, e.g. 1K,2K")
    return sizes


# ProviderConfig field -> (variable suffix, parser). name/api_key/base_url/model are read directly.
_OPTIONAL_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "format": ("FORMAT", _choice(*WIRE_FORMATS)),
    "stream": ("STREAM", parse_bool),
    "timeout": ("TIMEOUT", parse_seconds),
    "max_retries": ("MAX_RETRIES", _parse_int(0)),
    "auth": ("AUTH", _choice("bearer", "x-goog-api-key")),
    "chat_options": ("CHAT_OPTIONS", _choice("extra_body", "image_config", "prompt")),
    "chat_string_content": ("CHAT_STRING_CONTENT", parse_bool),
    "images_input": ("IMAGES_INPUT", _choice("contents", "edits")),
    "chat_dialect": ("CHAT_DIALECT", _choice("plain", "litellm")),
    "images_options": ("IMAGES_OPTIONS", _choice("openai", "mixroute")),
    "previews": ("PREVIEWS", parse_bool),
    "allow_private_urls": ("ALLOW_PRIVATE_URLS", parse_bool),
    "max_download_bytes": ("MAX_DOWNLOAD_BYTES", _parse_int(1)),
    "resolutions": ("RESOLUTIONS", _resolutions),
    "max_concurrent": ("MAX_CONCURRENT", _parse_int(1)),
}


def provider_names(env: Mapping[str, str]) -> list[str]:
    return [n.strip().lower() for n in env.get("PROVIDERS", "").split(",") if n.strip()]


def load_provider_configs(env: Mapping[str, str], *, require_keys: bool = True) -> list[ProviderConfig]:
    """Every configured provider, in PROVIDERS order; raises ConfigError listing every problem.
    Without `require_keys` (a process that never calls a gateway) a missing API key is no problem."""
    names = provider_names(env)
    if not names:
        raise ConfigError("PROVIDERS is not set: list provider names, e.g. PROVIDERS=mule,google")
    problems: list[str] = []
    configs: list[ProviderConfig] = []
    seen: set[str] = set()
    for name in names:
        if not _NAME_RE.match(name):
            problems.append(f"PROVIDERS: provider name {name!r} may only use letters, digits and _")
            continue
        if name in seen:
            problems.append(f"PROVIDERS: provider {name!r} is listed twice")
            continue
        seen.add(name)
        config = _load_one(name, env, problems, require_keys)
        if config is not None:
            configs.append(config)
    if problems:
        raise ConfigError("\n".join(problems))
    return configs


def _load_one(name: str, env: Mapping[str, str], problems: list[str], require_key: bool = True) -> ProviderConfig | None:
    prefix = f"PROVIDER_{name.upper()}_"

    def get(suffix: str) -> str | None:
        value = env.get(prefix + suffix)
        return value.strip() if value is not None and value.strip() else None

    before = len(problems)
    values: dict[str, Any] = {"name": name}
    preset, unknown_preset = get("PRESET"), False
    if preset is None and name in PRESETS:
        preset = name  # PROVIDERS=google and a key are enough
    if preset is not None:
        preset = preset.lower()
        if preset not in PRESETS:
            close = _nearest_preset(preset)
            problems.append(f"{prefix}PRESET: unknown preset {preset!r}"
                            + (f" (did you mean {close!r}?)" if close else "")
                            + f"; the presets are {', '.join(PRESETS)}")
            preset, unknown_preset = None, True
        else:
            values.update({k: v for k, v in PRESETS[preset].items() if v is not None})
            values["preset"] = preset

    for field, (suffix, parse) in _OPTIONAL_FIELDS.items():
        raw = get(suffix)
        if raw is None:
            continue
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            problems.append(f"{prefix}{suffix}: {raw!r} {exc}")

    base_url = get("BASE_URL")
    if base_url is not None:
        if not re.match(r"^https?://[^/\s]+", base_url):
            problems.append(f"{prefix}BASE_URL: {base_url!r} must start with http:// or https://")
        elif _PLACEHOLDER_URL.search(base_url):
            problems.append(f"{prefix}BASE_URL: {base_url!r} is a placeholder; put in your gateway's "
                            "real address, with its version segment (e.g. /v1)")
        values["base_url"] = base_url.rstrip("/")
    if get("MODEL") is not None:
        values["model"] = get("MODEL")
    values["api_key"] = get("API_KEY") or ""

    # After an unknown preset, what it would have filled in is not reported missing: one line is enough.
    if "format" not in values and not unknown_preset and \
            not any(p.startswith(f"{prefix}FORMAT") for p in problems[before:]):
        close = _nearest_preset(name)
        problems.append(f"{prefix}FORMAT is not set: use openai_chat, openai_images or gemini "
                        f"(or set {prefix}PRESET" + (f"; a provider named {close!r} uses that preset" if close
                                                     else "") + ")")
    if "base_url" not in values and not unknown_preset:
        hint = f" (the {preset} preset has no default host)" if preset else ""
        problems.append(f"{prefix}BASE_URL is not set{hint}: give the gateway URL including its "
                        "version segment, e.g. https://api.example.com/v1")
    if not values["api_key"] and require_key:
        problems.append(f"{prefix}API_KEY is not set")
    if "model" not in values and not unknown_preset:
        problems.append(f"{prefix}MODEL is not set")
    if len(problems) > before:
        return None
    return ProviderConfig(**values)


# What .env.example and gateway docs write where an address belongs: YOUR-HOST, <host>, example.com.
_PLACEHOLDER_URL = re.compile(r"(?i)[<>{}]|\.\.\.|^https?://[^/]*\byour[-_.]|"
                              r"^https?://([^/@]*[.@])?example\.(com|net|org)(:\d+)?(/|$)")


def _nearest_preset(word: str) -> str | None:
    return next(iter(difflib.get_close_matches(word, PRESETS, n=1)), None)


def translator_for(config: ProviderConfig) -> ModuleType:
    """The wire-format module (openai_chat, openai_images or gemini) for a config."""
    if config.format not in WIRE_FORMATS:
        raise ConfigError(f"PROVIDER_{config.name.upper()}_FORMAT: unknown format {config.format!r}")
    return importlib.import_module(f"{__package__}.{config.format}")

