"""`python -m providers`: check a key and a gateway without Discord (SPEC §5).

    python -m providers generate "PROMPT" [--image FILE]... [--aspect-ratio R] [--resolution 1K|2K|4K]
                                 [--count N] [--provider NAME] [--stream] [--out DIR] [--previews DIR] [-v]
    python -m providers list

Exit codes: 0 success; 2 configuration or usage error; 3 refused by the model (no image);
4 provider or network failure after retries and failover; 5 the gateway rejected the key;
1 unexpected internal error. Errors are one line on stderr, never a traceback, never a key; a provider
that failed before another answered is a warning on stderr and an entry of "attempts" in the JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from dotenv import load_dotenv

from .base import ProviderConfig
from .client import ProviderRouter
from .presets import load_provider_configs
from .files import directory_problem, new_file
from .errors import AuthError, ConfigError, ProviderError, RefusedError
from .images import to_image
from .models import ASPECT_RATIOS, MAX_COUNT, RESOLUTIONS, GenerationRequest, GenerationResult, Progress
from .redact import Redactor

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_REFUSED, EXIT_FAILED, EXIT_KEY_REJECTED = 0, 1, 2, 3, 4, 5


class UsageError(Exception):
    """Bad command line or input file: exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line on stderr, not usage + error
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m providers", description="Nano Banana provider check tool.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gen = sub.add_parser("generate", help="generate or edit an image and write it to --out")
    gen.add_argument("prompt")
    gen.add_argument("--image", action="append", default=[], metavar="FILE",
                     help="input image to edit or fuse (repeatable)")
    gen.add_argument("--aspect-ratio", choices=ASPECT_RATIOS)
    gen.add_argument("--resolution", choices=RESOLUTIONS, type=str.upper)  # 2k is 2K
    gen.add_argument("--count", type=int, default=1, help=f"images to make (1-{MAX_COUNT})")
    gen.add_argument("--provider", help="provider name from PROVIDERS (default: the first)")
    gen.add_argument("--stream", action="store_true", help="ask for an SSE stream")
    gen.add_argument("--out", default=".", metavar="DIR", help="directory for the images (default .)")
    gen.add_argument("--previews", metavar="DIR",
                     help="write the model's interim (thought) images here as they arrive")
    gen.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    sub.add_parser("list", help="show the configured providers, keys masked")
    return parser


def mask_key(key: str) -> str:
    return f"{key[:4]}...{key[-4:]}" if len(key) >= 16 else "***"


def _env_redactor(env: Mapping[str, str]) -> Redactor:
    return Redactor(v for k, v in env.items() if k.startswith("PROVIDER_") and k.endswith("_API_KEY"))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (tuple, list, frozenset)):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def list_providers(configs: Sequence[ProviderConfig]) -> str:
    """One line per provider with every setting (named as its PROVIDER_<NAME>_ suffix), key masked."""
    lines = []
    for i, c in enumerate(configs):
        role = "default" if i == 0 else f"failover {i}"
        settings = " ".join(f"{f.name}={_shown(getattr(c, f.name))}" for f in dataclasses.fields(c)
                            if f.name not in ("name", "api_key"))
        lines.append(f"{c.name} ({role}): {settings} key: {mask_key(c.api_key)}")
    return "\n".join(lines)


def _read_images(paths: Sequence[str]) -> tuple[Any, ...]:
    images = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read --image {path}: {exc.strerror or exc}") from None
        try:
            images.append(to_image(data))
        except ValueError:
            raise UsageError(f"--image {path} is not a PNG, JPEG, WebP or GIF image") from None
    return tuple(images)


def _check_out(out: Path) -> None:
    """--out must exist or be creatable, and take a file, before any paid call."""
    problem = directory_problem(out)
    if problem:
        raise UsageError(f"--out {out}: {problem}")


def _write_images(result: GenerationResult, out: Path) -> list[dict[str, Any]]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    written = []
    for i, img in enumerate(result.images, 1):
        with new_file(out, f"{result.provider}-{stamp}-{i}", img.extension) as file:
            file.write(img.data)
        path = Path(file.name)
        written.append({"path": str(path), "mime_type": img.mime_type, "width": img.width,
                        "height": img.height})
    return written


async def generate(args: argparse.Namespace, configs: list[ProviderConfig]) -> dict[str, Any]:
    if not 1 <= args.count <= MAX_COUNT:
        raise UsageError(f"--count must be between 1 and {MAX_COUNT}")
    if not args.prompt.strip():
        raise UsageError("the prompt is empty")
    out = Path(args.out)
    _check_out(out)
    if args.stream:
        configs = [dataclasses.replace(c, stream=True) for c in configs]
    request = GenerationRequest(prompt=args.prompt, images=_read_images(args.image),
                                aspect_ratio=args.aspect_ratio, resolution=args.resolution,
                                count=args.count)
    async with aiohttp.ClientSession() as session:
        router = ProviderRouter(configs, session)
        if args.provider:
            router.get(args.provider)  # unknown name: ConfigError before any request
        previews: list[str] = []
        on_progress = (lambda p: _write_preview(p, Path(args.previews), previews)) if args.previews else None
        result = await router.generate(request, provider=args.provider, on_progress=on_progress)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    output = {"provider": result.provider, "model": result.model,
              "images": _write_images(result, out), "text": result.text,
              "usage": result.usage, "seconds": round(result.seconds, 3),
              "attempts": [{"provider": a.provider, "error": a.error} for a in result.attempts]}
    if args.previews:
        output["previews"] = previews
    if result.warnings:
        output["warnings"] = result.warnings
    return output


def _write_preview(progress: Progress, folder: Path, written: list[str]) -> None:
    if progress.preview is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"preview-{time.strftime('%Y%m%d-%H%M%S')}-{len(written) + 1}.{progress.preview.extension}"
    path.write_bytes(progress.preview.data)
    written.append(str(path))
    logging.getLogger(__name__).info("preview %d: %s (%sx%s)", len(written), path,
                                     progress.preview.width, progress.preview.height)


def _fail(code: int, message: str, redact: Redactor) -> int:
    lines = [" ".join(line.split()) for line in redact(message).splitlines() if line.strip()]
    for line in lines or ["failed"]:
        print(f"error: {line}", file=sys.stderr)
    return code


def _describe(exc: ProviderError) -> str:
    where = f"{exc.provider}: " if exc.provider else ""
    if isinstance(exc, AuthError) and exc.provider:
        return f"{where}{exc.operator_message} Check PROVIDER_{exc.provider.upper()}_API_KEY " \
               f"(and that PROVIDER_{exc.provider.upper()}_BASE_URL is that key's gateway)."
    return f"{where}{exc.operator_message}"


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    if env is None:
        load_dotenv(Path.cwd() / ".env", override=False)  # the real environment wins
        env = os.environ
    redact = _env_redactor(env)
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.CRITICAL,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        configs = load_provider_configs(env)
        if args.command == "list":
            print(redact(list_providers(configs)))
            return EXIT_OK
        output = asyncio.run(generate(args, configs))
    except (UsageError, ConfigError) as exc:
        return _fail(EXIT_USAGE, str(exc), redact)
    except RefusedError as exc:
        return _fail(EXIT_REFUSED, _describe(exc), redact)
    except AuthError as exc:
        return _fail(EXIT_KEY_REJECTED, _describe(exc), redact)
    except ProviderError as exc:
        return _fail(EXIT_FAILED, _describe(exc), redact)
    except KeyboardInterrupt:
        return _fail(130, "interrupted", redact)
    except OSError as exc:  # --out not writable, and the like
        return _fail(EXIT_USAGE, f"{type(exc).__name__}: {exc}", redact)
    except Exception as exc:  # a bug: still one line, still no key
        return _fail(EXIT_INTERNAL, f"unexpected {type(exc).__name__}: {exc}", redact)
    for attempt in output["attempts"]:  # "check a key" must not pass quietly on a failover
        print(redact(f"warning: {attempt['provider']} failed, so {output['provider']} answered instead: "
                     f"{attempt['error']}"), file=sys.stderr)
    print(redact(json.dumps(output, ensure_ascii=False)))
    return EXIT_OK
