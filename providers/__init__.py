"""Async clients for the Nano Banana gateways. Knows nothing of Discord.

The bot and the CLI use:
    load_provider_configs(env) -> list[ProviderConfig]      (providers.presets)
    ProviderRouter(configs, session).generate(request, provider=None) -> GenerationResult
                                                             (providers.client)
"""
from .base import ProviderConfig
from .errors import (AuthError, BadRequestError, ConfigError, MalformedResponse, NoImageError,
                     ProviderError, ProviderTimeout, RateLimitError, RefusedError, ServerError)
from .models import ASPECT_RATIOS, RESOLUTIONS, GenerationRequest, GenerationResult, ImageData, Turn

__all__ = [
    "ASPECT_RATIOS", "RESOLUTIONS", "AuthError", "BadRequestError", "ConfigError", "GenerationRequest",
    "GenerationResult", "ImageData", "MalformedResponse", "NoImageError", "ProviderConfig", "ProviderError",
    "ProviderTimeout", "RateLimitError", "RefusedError", "ServerError", "Turn",
]
