"""Downloading image URLs found in answers: http(s) only, size-capped, no SSRF, no key leaks.

A URL whose host resolves to a private, loopback or link-local address is refused unless it is
on the gateway's own origin (scheme, host and port: another port of a private gateway host is
another service) or the operator set allow_private_urls. Redirects are followed by hand so
each hop is checked again; the gateway's auth header goes only to the gateway's own origin.
The address check runs before connecting: a host whose DNS answer changes between the check and
the connection (DNS rebinding) is not covered.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time

import aiohttp
from yarl import URL

from .base import ProviderConfig
from .errors import MalformedResponse, ProviderTimeout, ServerError
from .redact import Redactor

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK = 256 * 1024


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                or ip.is_multicast or ip.is_unspecified)


async def _check_url(url: URL, config: ProviderConfig, gateway: URL) -> None:
    if url.scheme not in ("http", "https") or not url.host:
        raise MalformedResponse("The image service answered with an image link the bot cannot fetch.",
                                detail=f"refused non-http(s) image URL scheme {url.scheme!r}")
    if config.allow_private_urls or url.origin() == gateway.origin():
        return
    try:
        addresses = [ipaddress.ip_address(url.host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                url.host, url.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise MalformedResponse("The bot could not download the generated image.",
                                    detail=f"cannot resolve image host {url.host}: {exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or not all(_is_public(ip) for ip in addresses):
        raise MalformedResponse("The image service answered with an image link the bot will not fetch.",
                                detail=f"refused image URL on private/loopback host {url.host}")


async def download(session: aiohttp.ClientSession, url: str, config: ProviderConfig,
                   auth_headers: dict[str, str], redact: Redactor) -> tuple[bytes, str | None]:
    """The bytes at `url` (at most config.max_download_bytes) and the declared content type."""
    gateway = URL(config.base_url)
    current = URL(url, encoded=True)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=config.timeout)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            await _check_url(current, config, gateway)
            # The key goes only to the gateway's own origin, never to a foreign image host.
            headers = dict(auth_headers) if current.origin() == gateway.origin() else {}
            async with session.get(current, headers=headers, allow_redirects=False,
                                   timeout=timeout) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    current = current.join(URL(resp.headers["Location"], encoded=True))
                    continue
                if resp.status != 200:
                    raise MalformedResponse("The bot could not download the generated image.",
                                            status=resp.status,
                                            detail=redact(f"image download HTTP {resp.status}"))
                data = await _read_capped(resp, config)
                log.info("%s: downloaded image from %s: %d bytes in %.2fs", config.name,
                         current.host, len(data), time.monotonic() - started)
                return data, resp.headers.get("Content-Type")
        raise MalformedResponse("The bot could not download the generated image.",
                                detail="too many redirects")
    except asyncio.TimeoutError:
        raise ProviderTimeout("Downloading the generated image took too long.") from None
    except aiohttp.ClientError as exc:
        raise ServerError("The bot could not download the generated image.",
                          detail=redact(f"{type(exc).__name__}: {exc}")) from None


async def _read_capped(resp: aiohttp.ClientResponse, config: ProviderConfig) -> bytes:
    limit = config.max_download_bytes
    too_big = MalformedResponse("The generated image is too large to download.",
                                detail=f"image download over {limit} bytes")
    if resp.content_length is not None and resp.content_length > limit:
        raise too_big
    data = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > limit:  # stop reading as soon as the cap is passed
            raise too_big
    return bytes(data)
