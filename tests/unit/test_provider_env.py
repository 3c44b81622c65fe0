"""providers.presets: presets, overrides, and one clear line per problem (SPEC §3)."""
from __future__ import annotations

import pytest

from providers import gemini, openai_chat, openai_images
from providers.presets import PRESETS, load_provider_configs, translator_for
from providers.errors import ConfigError


def env_for(name: str = "main", **values: str) -> dict[str, str]:
    env = {"PROVIDERS": name}
    env.update({f"PROVIDER_{name.upper()}_{k}": v for k, v in values.items()})
    return env


def load_one(name: str = "main", **values: str):
    (config,) = load_provider_configs(env_for(name, **values))
    return config


def errors(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_provider_configs(env)
    return str(info.value).splitlines()


EXPECTED = {
    "mulerun": dict(format="openai_chat", base_url="https://api.mulerun.com/v1",
                    model="gemini-2.5-flash-image-preview", chat_options="prompt", auth="bearer"),
    "mixroute": dict(format="openai_images", base_url="https://console.mixroute.io/v1",
                     model="gemini-2.5-flash-image", images_input="contents", images_options="mixroute",
                     auth="bearer"),
    "infinityblue": dict(format="openai_chat", base_url="https://api.getinfinityblue.com/v1",
                         model="nanobanana_pro", chat_options="extra_body", chat_string_content=True),
    "google": dict(format="gemini", base_url="https://generativelanguage.googleapis.com/v1beta",
                   model="gemini-2.5-flash-image", auth="x-goog-api-key"),
    "openrouter": dict(format="openai_chat", base_url="https://openrouter.ai/api/v1",
                       model="google/gemini-2.5-flash-image", chat_options="image_config"),
}


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_each_preset_fills_format_url_model_and_quirks(preset):
    config = load_one(PRESET=preset, API_KEY="k-123456")
    assert config.preset == preset and config.name == "main" and config.api_key == "k-123456"
    for field, value in EXPECTED[preset].items():
        assert getattr(config, field) == value, field
    assert config.stream is False and config.max_retries == 2 and config.timeout == 300.0


def test_yescale_needs_a_base_url_and_uses_x_goog_api_key():
    (line,) = errors(env_for(PRESET="yescale", API_KEY="k"))
    assert line.startswith("PROVIDER_MAIN_BASE_URL is not set")
    config = load_one(PRESET="yescale", API_KEY="k", BASE_URL="https://api.yescale.io/v1beta/")
    assert (config.format, config.auth, config.model) == ("gemini", "x-goog-api-key",
                                                          "gemini-2.5-flash-image-preview")
    assert config.base_url == "https://api.yescale.io/v1beta"  # trailing slash stripped


def test_every_preset_is_covered():
    assert set(PRESETS) == set(EXPECTED) | {"yescale", "litellm"}


def test_litellm_needs_a_base_url_and_speaks_chat_with_litellm_fields():
    (line,) = errors(env_for(PRESET="litellm", API_KEY="k"))
    assert line.startswith("PROVIDER_MAIN_BASE_URL is not set (the litellm preset has no default host)")
    config = load_one(PRESET="litellm", API_KEY="k", BASE_URL="http://127.0.0.1:4000/v1")
    assert (config.format, config.chat_options, config.chat_dialect) == ("openai_chat", "image_config", "litellm")
    assert config.max_retries == 2 and config.previews is None  # LiteLLM's own retries are turned off per request


def test_previews_images_options_and_chat_dialect_variables():
    config = load_one(FORMAT="gemini", BASE_URL="http://h/v1beta", API_KEY="k", MODEL="gemini-3-pro-image-preview")
    assert config.wants_previews is True  # a thinking model on the gemini format
    assert load_one(FORMAT="gemini", BASE_URL="http://h/v1beta", API_KEY="k", MODEL="gemini-3-pro-image-preview",
                    PREVIEWS="off").wants_previews is False
    assert load_one(FORMAT="gemini", BASE_URL="http://h/v1beta", API_KEY="k",
                    MODEL="gemini-2.5-flash-image").wants_previews is False
    config = load_one(FORMAT="openai_images", BASE_URL="http://h/v1", API_KEY="k", MODEL="m",
                      IMAGES_OPTIONS="mixroute")
    assert config.images_options == "mixroute" and config.images_input == "edits"  # OpenAI's default
    assert errors(env_for(FORMAT="openai_chat", BASE_URL="http://h/v1", API_KEY="k", MODEL="m",
                          CHAT_DIALECT="vllm", PREVIEWS="maybe")) == [
        "PROVIDER_MAIN_CHAT_DIALECT: 'vllm' must be one of plain, litellm",
        "PROVIDER_MAIN_PREVIEWS: 'maybe' must be true or false (1/0, yes/no, on/off)"]


def test_explicit_variables_override_the_preset():
    config = load_one(PRESET="mulerun", API_KEY="k", BASE_URL="http://127.0.0.1:9/x/v1/", MODEL="m2",
                      FORMAT="gemini", STREAM="yes", TIMEOUT="12.5", MAX_RETRIES="0", AUTH="x-goog-api-key",
                      CHAT_OPTIONS="extra_body", CHAT_STRING_CONTENT="on", IMAGES_INPUT="edits",
                      ALLOW_PRIVATE_URLS="1", MAX_DOWNLOAD_BYTES="1000")
    assert config.base_url == "http://127.0.0.1:9/x/v1" and config.model == "m2"
    assert config.format == "gemini" and config.stream is True and config.timeout == 12.5
    assert config.max_retries == 0 and config.auth == "x-goog-api-key"
    assert config.chat_options == "extra_body" and config.chat_string_content is True
    assert config.images_input == "edits" and config.allow_private_urls is True
    assert config.max_download_bytes == 1000


def test_without_preset_everything_is_explicit():
    config = load_one(FORMAT="openai_images", BASE_URL="https://proxy.example/v1", API_KEY="k", MODEL="m")
    assert config.preset is None and config.format == "openai_images" and config.auth == "bearer"


def test_order_names_and_case():
    env = {**env_for("mule", PRESET="mulerun", API_KEY="a"), **env_for("google", PRESET="google", API_KEY="b"),
           "PROVIDERS": " Mule , google "}
    assert [c.name for c in load_provider_configs(env)] == ["mule", "google"]


@pytest.mark.parametrize("values, expected", [
    (dict(PRESET="nope", API_KEY="k"), "PROVIDER_MAIN_PRESET: unknown preset 'nope'; the presets are mulerun,"),
    (dict(FORMAT="soap", BASE_URL="https://x/v1", API_KEY="k", MODEL="m"),
     "PROVIDER_MAIN_FORMAT: 'soap' must be one of openai_chat, openai_images, gemini"),
    (dict(PRESET="mulerun"), "PROVIDER_MAIN_API_KEY is not set"),
    (dict(PRESET="mulerun", API_KEY="k", TIMEOUT="soon"), "PROVIDER_MAIN_TIMEOUT: 'soon' must be a number"),
    (dict(PRESET="mulerun", API_KEY="k", TIMEOUT="0"), "PROVIDER_MAIN_TIMEOUT: '0' must be a number"),
    (dict(PRESET="mulerun", API_KEY="k", MAX_RETRIES="two"), "PROVIDER_MAIN_MAX_RETRIES: 'two' must be a whole"),
    (dict(PRESET="mulerun", API_KEY="k", MAX_RETRIES="-1"), "PROVIDER_MAIN_MAX_RETRIES: '-1' must be a whole"),
    (dict(PRESET="mulerun", API_KEY="k", STREAM="maybe"), "PROVIDER_MAIN_STREAM: 'maybe' must be true or false"),
    (dict(PRESET="mulerun", API_KEY="k", AUTH="basic"), "PROVIDER_MAIN_AUTH: 'basic' must be one of"),
    (dict(PRESET="mulerun", API_KEY="k", BASE_URL="api.example.com"), "PROVIDER_MAIN_BASE_URL: 'api.example.com'"),
    (dict(PRESET="mulerun", API_KEY="k", MAX_DOWNLOAD_BYTES="1e6"), "PROVIDER_MAIN_MAX_DOWNLOAD_BYTES"),
])
def test_each_problem_is_one_line_naming_the_variable(values, expected):
    lines = errors(env_for(**values))
    assert any(line.startswith(expected) for line in lines), lines
    assert all(line.startswith("PROVIDER_MAIN_") for line in lines)


def test_a_provider_named_like_a_preset_uses_it():
    (config,) = load_provider_configs({"PROVIDERS": "google", "PROVIDER_GOOGLE_API_KEY": "k"})
    assert config.preset == "google" and config.format == "gemini" and config.auth == "x-goog-api-key"
    assert config.base_url == EXPECTED["google"]["base_url"] and config.model == EXPECTED["google"]["model"]
    # an explicit preset or variable still wins over the name
    config = load_one("google", PRESET="openrouter", API_KEY="k", MODEL="m")
    assert config.preset == "openrouter" and config.format == "openai_chat" and config.model == "m"


@pytest.mark.parametrize("preset, nearest", [("mulrun", "mulerun"), ("Gogle", "google"),
                                             ("open-router", "openrouter"), ("infinity_blue", "infinityblue")])
def test_a_misspelled_preset_is_one_line_with_the_nearest_name(preset, nearest):
    assert errors(env_for(PRESET=preset, API_KEY="k")) == [
        f"PROVIDER_MAIN_PRESET: unknown preset {preset.lower()!r} (did you mean {nearest!r}?); "
        f"the presets are {', '.join(PRESETS)}"]


def test_a_provider_name_close_to_a_preset_gets_a_hint():
    (line, *_) = errors({"PROVIDERS": "gogle", "PROVIDER_GOGLE_API_KEY": "k"})
    assert line.startswith("PROVIDER_GOGLE_FORMAT is not set") and "a provider named 'google'" in line


@pytest.mark.parametrize("url", ["https://YOUR-YESCALE-HOST/v1beta", "https://your_gateway.io/v1",
                                 "https://<host>/v1beta", "https://proxy.example.com/v1", "http://example.org/v1",
                                 "https://api.{host}/v1", "https://.../v1"])
def test_a_placeholder_url_is_refused_in_one_line(url):
    assert errors(env_for(PRESET="yescale", API_KEY="k", BASE_URL=url)) == [
        f"PROVIDER_MAIN_BASE_URL: {url!r} is a placeholder; put in your gateway's real address, "
        "with its version segment (e.g. /v1)"]


@pytest.mark.parametrize("url", ["https://api.yescale.io/v1beta", "https://yourgateway.io/v1",
                                 "https://notexample.com/v1", "http://127.0.0.1:8080/v1", "https://proxy.example/v1"])
def test_real_urls_are_not_taken_for_placeholders(url):
    assert load_one(PRESET="yescale", API_KEY="k", BASE_URL=url).base_url == url


def test_missing_everything_without_a_preset():
    lines = errors(env_for())
    assert [line.split(" ")[0].rstrip(":") for line in lines] == [
        "PROVIDER_MAIN_FORMAT", "PROVIDER_MAIN_BASE_URL", "PROVIDER_MAIN_API_KEY", "PROVIDER_MAIN_MODEL"]


def test_all_problems_of_all_providers_are_collected():
    env = {**env_for("a", PRESET="mulerun"), **env_for("b", PRESET="google", TIMEOUT="x", API_KEY="k"),
           "PROVIDERS": "a,b"}
    assert errors(env) == ["PROVIDER_A_API_KEY is not set",
                           "PROVIDER_B_TIMEOUT: 'x' must be a number of seconds"]


@pytest.mark.parametrize("providers, expected", [
    ("", "PROVIDERS is not set"), (" , ", "PROVIDERS is not set"),
    ("a,a", "PROVIDERS: provider 'a' is listed twice"),
    ("bad-name", "PROVIDERS: provider name 'bad-name'"),
])
def test_providers_variable_problems(providers, expected):
    env = {**env_for("a", PRESET="mulerun", API_KEY="k"), "PROVIDERS": providers}
    assert errors(env)[0].startswith(expected)


def test_error_lines_never_show_the_key():
    lines = errors(env_for(PRESET="mulerun", API_KEY="sk-very-secret-value", TIMEOUT="x"))
    assert not any("sk-very-secret-value" in line for line in lines)


def test_repr_hides_the_key():
    config = load_one(PRESET="mulerun", API_KEY="sk-very-secret-value")
    assert "sk-very-secret-value" not in repr(config)


def test_translator_for_each_format():
    modules = {"openai_chat": openai_chat, "openai_images": openai_images, "gemini": gemini}
    for preset in PRESETS:
        extra = {"BASE_URL": "https://x/v1beta"} if preset in ("yescale", "litellm") else {}
        config = load_one(PRESET=preset, API_KEY="k", **extra)
        assert translator_for(config) is modules[config.format]


def test_env_example_documents_every_variable_and_loads(tmp_path):
    from pathlib import Path

    from dotenv import dotenv_values

    from core.config import Config
    from providers.presets import _OPTIONAL_FIELDS

    path = Path(__file__).resolve().parents[2] / ".env.example"
    text = path.read_text()
    # It opens with the shortest working setup: the token, explained where it stands, then one key.
    settings_lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings_lines[:3] == ["DISCORD_TOKEN=", "PROVIDERS=google", "PROVIDER_GOOGLE_API_KEY="]
    before_token = text[:text.index("DISCORD_TOKEN=")]
    assert "Reset Token" in before_token and "Message Content" in before_token
    assert "# --- Providers ---" in text
    for suffix in ["PRESET", "API_KEY", "BASE_URL", "MODEL"] + [s for s, _ in _OPTIONAL_FIELDS.values()]:
        assert f"PROVIDER_<NAME>_{suffix}" in text, suffix
    for preset in PRESETS:
        assert f"_PRESET={preset}" in text, preset
    assert "LAG_PROBE" not in text  # benchmark knobs live in bench/README.md
    env = {k: v or "" for k, v in dotenv_values(path).items()}
    settings = Config.from_env({**env, "DISCORD_TOKEN": "t", "PROVIDER_GOOGLE_API_KEY": "k",
                                  "DATA_DIR": str(tmp_path)})
    (config,) = settings.providers
    assert config.preset == "google" and config.api_key == "k"
