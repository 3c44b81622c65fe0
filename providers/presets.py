"""Provider configuration from the environment (SPEC §3).

    PROVIDERS=mule,google                    first is the default, the rest the failover order
    PROVIDER_MULE_PRESET=mulerun             fills format, base URL, model and quirks
    PROVIDER_MULE_API_KEY=sk-...             explicit PROVIDER_<NAME>_* variables override a preset

Every problem is collected and reported at once, one line each, naming the variable.
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Callable

from .base import WIRE_FORMATS, ProviderConfig
from .errors import ConfigError

# What each preset fills in; see ../shared/seeds/ and research/gateways.md §0.
PRESETS: dict[str, dict[str, Any]] = {
    "mulerun": dict(format="openai_chat", base_url="https://api.mulerun.com/v1",
                    model="gemini-2.5-flash-image-preview", chat_options="prompt"),
    "mixroute": dict(format="openai_images", base_url="https://console.mixroute.io/v1",
                     model="gemini-2.5-flash-image", images_input="contents"),
    # The YEScale seed shows no host: the base URL must be given.
    "yescale": dict(format="gemini", base_url=None,
                    model="gemini-2.5-flash-image-preview", auth="x-goog-api-key"),
    "infinityblue": dict(format="openai_chat", base_url="https://api.getinfinityblue.com/v1",
                         model="nanobanana_pro", chat_options="extra_body", chat_string_content=True),
    "google": dict(format="gemini", base_url="https://generativelanguage.googleapis.com/v1beta",
                   model="gemini-2.5-flash-image", auth="x-goog-api-key"),
    "openrouter": dict(format="openai_chat", base_url="https://openrouter.ai/api/v1",
                       model="google/gemini-2.5-flash-image", chat_options="image_config"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_NAME_RE = re.compile(r"^[a-z0-9_]+$")


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _parse_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("must be a number of seconds above 0")
    return value


def _parse_int(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if value < minimum:
            raise ValueError(f"must be a whole number >= {minimum}")
        return value
    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return parse


# ProviderConfig field -> (variable suffix, parser). name/api_key/base_url/model are read directly.
_OPTIONAL_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "format": ("FORMAT", _choice(*WIRE_FORMATS)),
    "stream": ("STREAM", _parse_bool),
    "timeout": ("TIMEOUT", _parse_float),
    "max_retries": ("MAX_RETRIES", _parse_int(0)),
    "auth": ("AUTH", _choice("bearer", "x-goog-api-key")),
    "chat_options": ("CHAT_OPTIONS", _choice("extra_body", "image_config", "prompt")),
    "chat_string_content": ("CHAT_STRING_CONTENT", _parse_bool),
    "images_input": ("IMAGES_INPUT", _choice("contents", "edits")),
    "allow_private_urls": ("ALLOW_PRIVATE_URLS", _parse_bool),
    "max_download_bytes": ("MAX_DOWNLOAD_BYTES", _parse_int(1)),
    "max_concurrent": ("MAX_CONCURRENT", _parse_int(1)),
}


def provider_names(env: Mapping[str, str]) -> list[str]:
    return [n.strip().lower() for n in env.get("PROVIDERS", "").split(",") if n.strip()]


def load_provider_configs(env: Mapping[str, str]) -> list[ProviderConfig]:
    """Every configured provider, in PROVIDERS order; raises ConfigError listing every problem."""
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
        config = _load_one(name, env, problems)
        if config is not None:
            configs.append(config)
    if problems:
        raise ConfigError("\n".join(problems))
    return configs


def _load_one(name: str, env: Mapping[str, str], problems: list[str]) -> ProviderConfig | None:
    prefix = f"PROVIDER_{name.upper()}_"

    def get(suffix: str) -> str | None:
        value = env.get(prefix + suffix)
        return value.strip() if value is not None and value.strip() else None

    before = len(problems)
    values: dict[str, Any] = {"name": name}
    preset = get("PRESET")
    if preset is not None:
        preset = preset.lower()
        if preset not in PRESETS:
            problems.append(f"{prefix}PRESET: unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
            preset = None
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
        values["base_url"] = base_url.rstrip("/")
    if get("MODEL") is not None:
        values["model"] = get("MODEL")
    values["api_key"] = get("API_KEY") or ""

    if "format" not in values and not any(p.startswith(f"{prefix}FORMAT") for p in problems[before:]):
        problems.append(f"{prefix}FORMAT is not set: use openai_chat, openai_images or gemini "
                        f"(or set {prefix}PRESET)")
    if "base_url" not in values:
        hint = " (the yescale preset has no default host)" if preset == "yescale" else ""
        problems.append(f"{prefix}BASE_URL is not set{hint}: give the gateway URL including its "
                        "version segment, e.g. https://api.example.com/v1")
    if not values["api_key"]:
        problems.append(f"{prefix}API_KEY is not set")
    if "model" not in values:
        problems.append(f"{prefix}MODEL is not set")
    if len(problems) > before:
        return None
    return ProviderConfig(**values)


def translator_for(config: ProviderConfig) -> ModuleType:
    """The wire-format module (openai_chat, openai_images or gemini) for a config."""
    if config.format not in WIRE_FORMATS:
        raise ConfigError(f"PROVIDER_{config.name.upper()}_FORMAT: unknown format {config.format!r}")
    return importlib.import_module(f"{__package__}.{config.format}")

