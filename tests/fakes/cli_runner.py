"""`python -m providers ...` as a subprocess with a clean environment, for tests that drive the CLI."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from .secret_registry import record_output

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 90) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); nothing from the developer's shell or .env leaks in."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "providers", *args, cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    record_output(f"python -m providers {' '.join(args)} -> {proc.returncode}", out.decode(), err.decode())
    return proc.returncode, out.decode(), err.decode()
