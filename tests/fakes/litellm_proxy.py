"""The real LiteLLM proxy (`litellm[proxy]`, pinned in requirements-litellm.txt) on 127.0.0.1, in front
of a fake Gemini gateway, for the compatibility suite (tests/e2e/test_litellm_compat.py).

    async with FakeGateway() as gw, LiteLLMProxy(gw.url + "/v1beta", log_dir=tmp) as proxy:
        env = proxy.provider_env("lite", model="gemini-3-pro-image-preview")   # PROVIDER_LITE_*
        ...

The proxy runs in its own virtual environment (its dependencies are not the bot's): the `litellm`
command is found in $LITELLM_BIN, then in .venv-litellm/ at the repository root (what .ci/run
creates), then on PATH. It makes no outbound call: the model cost map is the bundled one, telemetry
is off, and HTTP(S)_PROXY point at a closed local port for everything but 127.0.0.1.

The config (`config_yaml`) is what the README tells an operator to write, with the fake's URL.
"""
from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from .secret_registry import register_secret

ROOT = Path(__file__).resolve().parents[2]
MASTER_KEY = register_secret("sk-litellm-proxy-MASTER-7781-distinct", "litellm_proxy.MASTER_KEY")
UPSTREAM_KEY = "fake-gemini-upstream-key"  # what the proxy sends the fake gateway
MODELS = ("gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview", "gemini-2.5-flash-image")
START_TIMEOUT = 120.0  # seconds; the proxy imports a lot, and the machine may be busy


class ProxyUnavailable(RuntimeError):
    """No `litellm` command, or the proxy did not start (the message says which, with its log)."""


def find_litellm() -> str | None:
    for candidate in (os.environ.get("LITELLM_BIN"), str(ROOT / ".venv-litellm" / "bin" / "litellm"),
                      shutil.which("litellm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def config_yaml(gemini_base: str) -> str:
    """LiteLLM's config.yaml: each model under Google's own name, Gemini as the upstream."""
    models = "".join(f"""  - model_name: {name}
    litellm_params:
      model: gemini/{name}
      api_base: {gemini_base}
      api_key: os.environ/GEMINI_API_KEY
""" for name in MODELS)
    return f"""model_list:
{models}litellm_settings:
  telemetry: false
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiteLLMProxy:
    def __init__(self, gemini_base: str, *, log_dir: Path) -> None:
        self.gemini_base = gemini_base
        self.log_dir = log_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "litellm-proxy.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def provider_env(self, name: str, **extra: Any) -> dict[str, str]:
        """PROVIDER_<NAME>_* for the litellm preset pointed at this proxy (extra: MODEL=..., STREAM=1)."""
        prefix = f"PROVIDER_{name.upper()}_"
        env = {prefix + "PRESET": "litellm", prefix + "BASE_URL": self.url + "/v1", prefix + "API_KEY": MASTER_KEY}
        env.update({prefix + k.upper(): str(v) for k, v in extra.items()})
        return env

    async def start(self) -> "LiteLLMProxy":
        binary = find_litellm()
        if binary is None:
            raise ProxyUnavailable("no `litellm` command: run .ci/run, or python3 -m venv .venv-litellm && "
                                   ".venv-litellm/bin/pip install -r requirements-litellm.txt")
        config = self.log_dir / "litellm-config.yaml"
        config.write_text(config_yaml(self.gemini_base))
        closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens: an outbound call fails at once
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.log_dir),
               "LITELLM_MASTER_KEY": MASTER_KEY, "GEMINI_API_KEY": UPSTREAM_KEY,
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
               "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True", "DISABLE_SCHEMA_UPDATE": "True",
               "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed, "https_proxy": closed,
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
               "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.log_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(_kill_group, self._proc)  # never outlive the test run
        await self._wait_ready()
        return self

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise ProxyUnavailable(f"the LiteLLM proxy exited with {self._proc.returncode}:\n{self.log()}")
                try:
                    async with session.get(f"{self.url}/health/readiness",
                                           timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.25)
        await self.close()
        raise ProxyUnavailable(f"the LiteLLM proxy was not ready within {START_TIMEOUT:g}s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the proxy and any worker it started
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 5)

    async def __aenter__(self) -> "LiteLLMProxy":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
