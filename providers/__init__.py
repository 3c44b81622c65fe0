"""Async clients for the Nano Banana gateways. Knows nothing of Discord.

The bot and the CLI use:
    load_provider_configs(env) -> list[ProviderConfig]      (providers.presets)
    ProviderRouter(configs, session).generate(request, provider=None, on_progress=None)
        -> GenerationResult                                  (providers.client)
    on_progress(Progress(text, preview)): the model's words and interim images while it streams
"""
from .base import ProviderConfig
from .errors import (AuthError, BadRequestError, ConfigError, MalformedResponse, NoImageError,
                     ProviderError, ProviderTimeout, RateLimitError, RefusedError, ServerError)
from .models import (ASPECT_RATIOS, RESOLUTIONS, GenerationRequest, GenerationResult, ImageData, OnProgress,
                     Progress, Turn)

__all__ = [
    "ASPECT_RATIOS", "RESOLUTIONS", "AuthError", "BadRequestError", "ConfigError", "GenerationRequest",
    "GenerationResult", "ImageData", "MalformedResponse", "NoImageError", "ProviderConfig", "ProviderError",
    "ProviderTimeout", "RateLimitError", "RefusedError", "ServerError", "Turn", "OnProgress", "Progress",
]
