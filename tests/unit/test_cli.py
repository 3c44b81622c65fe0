"""`python -m providers` as real subprocesses against the in-process fake gateway (SPEC §5)."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path

from PIL import Image

from fakes.fake_gateway import FakeGateway, Reply
from fakes.secret_registry import record_output, register_secret
from fakes.images import png

ROOT = Path(__file__).resolve().parents[2]
KEY = register_secret("sk-cli-Distinctive-Key-9931", "test_cli.KEY")
PRESETS = ("mulerun", "mixroute", "yescale", "infinityblue", "google", "openrouter")


async def cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    # A clean environment: nothing from the developer's shell or .env leaks into the test.
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "providers", *args, cwd=cwd, env=full_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    record_output(f"python -m providers {' '.join(args)} -> {proc.returncode}", out.decode(), err.decode())
    return proc.returncode, out.decode(), err.decode()


def provider_env(gw: FakeGateway, preset: str, **extra) -> dict[str, str]:
    return {"PROVIDERS": preset, **gw.provider_env(preset, preset, KEY, **extra)}


def assert_one_error_line(code: int, rc: int, out: str, err: str) -> str:
    assert rc == code, err
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert "Traceback" not in err and KEY not in err
    return err


async def test_generate_and_edit_with_every_preset(gw, tmp_path):
    # The fake answers each preset's format by path, and each chat gateway's shape by model name.
    source = tmp_path / "input.png"
    source.write_bytes(png((40, 30), color=(9, 8, 7)))
    runs = []
    for preset in PRESETS:
        for edit in (False, True):
            out_dir = tmp_path / f"{preset}-{'edit' if edit else 't2i'}"
            args = ["generate", f"apple for {out_dir.name}", "--out", str(out_dir), "--aspect-ratio", "1:1"]
            args += ["--image", str(source)] if edit else []
            runs.append((preset, edit, out_dir, cli(*args, env=provider_env(gw, preset), cwd=tmp_path)))
    results = await asyncio.gather(*(run for *_, run in runs))
    source_b64 = base64.b64encode(source.read_bytes()).decode()
    for (preset, edit, out_dir, _), (rc, out, err) in zip(runs, results):
        assert rc == 0, f"{preset}: {err}"
        assert err == "" and out.count("\n") == 1
        data = json.loads(out)
        assert set(data) == {"provider", "model", "images", "text", "usage", "seconds", "attempts"}
        assert data["attempts"] == []
        assert data["provider"] == preset and data["model"] and data["seconds"] >= 0
        (image,) = data["images"]
        path = Path(image["path"])
        assert path.parent == out_dir and path.suffix == ".png" and image["mime_type"] == "image/png"
        with Image.open(path) as decoded:
            assert decoded.size == (image["width"], image["height"]) == (64, 48)
        (request,) = [r for r in gw.requests if f"apple for {out_dir.name}".encode() in r.body]
        assert (source_b64 in request.body.decode()) is edit
        assert KEY not in out


async def test_edits_multipart_and_stream_flags(gw, tmp_path):
    source = tmp_path / "input.png"
    source.write_bytes(png())
    env = {**provider_env(gw, "mixroute", IMAGES_INPUT="edits"),
           "PROVIDERS": "mixroute,google", **gw.provider_env("google", "google", KEY)}
    (rc1, out1, err1), (rc2, out2, err2) = await asyncio.gather(
        cli("generate", "edit me", "--image", str(source), "--count", "2", env=env, cwd=tmp_path),
        cli("generate", "stream me", "--provider", "google", "--stream", env=env, cwd=tmp_path))
    assert rc1 == 0 and rc2 == 0, err1 + err2
    assert len(json.loads(out1)["images"]) == 2 and json.loads(out2)["provider"] == "google"
    paths = {r.path for r in gw.requests}
    assert paths == {"/v1/images/edits", "/v1beta/models/gemini-2.5-flash-image:streamGenerateContent"}


async def test_list_masks_keys_and_reads_dotenv_with_the_real_env_winning(tmp_path):
    (tmp_path / ".env").write_text(
        "PROVIDERS=mule,google\nPROVIDER_MULE_PRESET=mulerun\n"
        f"PROVIDER_MULE_API_KEY={KEY}\nPROVIDER_GOOGLE_PRESET=google\nPROVIDER_GOOGLE_API_KEY=short\n"
        "PROVIDER_GOOGLE_MODEL=from-dotenv\n")
    rc, out, err = await cli("list", env={"PROVIDER_GOOGLE_MODEL": "from-env"}, cwd=tmp_path)
    assert rc == 0 and err == ""
    mule, google = out.splitlines()
    assert mule.startswith("mule (default)") and "preset=mulerun" in mule and "sk-c...9931" in mule
    assert google.startswith("google (failover 1)") and "model=from-env" in google and "key: ***" in google
    assert KEY not in out and "short" not in out


async def test_usage_and_configuration_errors_exit_2(gw, tmp_path):
    good = provider_env(gw, "google")
    runs = await asyncio.gather(
        cli("generate", env={"PROVIDERS": "x", "PROVIDER_X_PRESET": "google"}, cwd=tmp_path),  # no prompt
        cli("generate", "hi", env={"PROVIDERS": "x", "PROVIDER_X_PRESET": "google"}, cwd=tmp_path),
        cli("generate", "hi", "--image", "missing.png", env=good, cwd=tmp_path),
        cli("generate", "hi", "--resolution", "8K", env=good, cwd=tmp_path),
        cli("generate", "hi", "--provider", "nope", env=good, cwd=tmp_path),
        cli("generate", "hi", env={**good, "PROVIDER_GOOGLE_FORMAT": "soap"}, cwd=tmp_path),
    )
    errors = [assert_one_error_line(2, *run) for run in runs]
    assert "prompt" in errors[0]
    assert errors[1] == "error: PROVIDER_X_API_KEY is not set\n"
    assert "missing.png" in errors[2] and "--resolution" in errors[3] and "'nope'" in errors[4]
    assert "PROVIDER_GOOGLE_FORMAT" in errors[5]
    assert gw.requests == []


async def test_refusal_exits_3_with_the_reason(gw, tmp_path):
    gw.enqueue(Reply(body={"candidates": [{"finishReason": "IMAGE_SAFETY", "content": {},
                                           "finishMessage": "Unable to show the generated image."}]}))
    err = assert_one_error_line(3, *await cli("generate", "hi", "--out", str(tmp_path / "o"),
                                              env=provider_env(gw, "google"), cwd=tmp_path))
    assert "IMAGE_SAFETY" in err and "Unable to show" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


async def test_failure_after_retries_and_failover_exits_4_without_the_key(gw, tmp_path):
    echo = {"error": {"message": f"upstream rejected Bearer {KEY} (key={KEY})"}}
    gw.enqueue(Reply(status=500, body=echo), Reply(status=503, body=echo))
    env = {**provider_env(gw, "google", MAX_RETRIES=0), **gw.provider_env("mule", "mulerun", KEY, MAX_RETRIES=0),
           "PROVIDERS": "google,mule"}
    err = assert_one_error_line(4, *await cli("generate", "hi", env=env, cwd=tmp_path))
    assert "unavailable" in err and "all providers failed" in err and len(gw.requests) == 2


def two_providers(gw: FakeGateway) -> dict[str, str]:
    return {**provider_env(gw, "google"), **gw.provider_env("mule", "mulerun", KEY), "PROVIDERS": "google,mule"}


async def test_a_failover_is_reported_so_a_key_check_cannot_pass_quietly(gw, tmp_path):
    gw.enqueue(Reply(status=401, body={"error": {"message": f"API key not valid: {KEY}"}}))
    rc, out, err = await cli("generate", "hi", "--out", str(tmp_path), env=two_providers(gw), cwd=tmp_path)
    assert rc == 0, err
    data = json.loads(out)
    assert data["provider"] == "mule"
    (attempt,) = data["attempts"]
    assert attempt["provider"] == "google" and "rejected the API key" in attempt["error"]
    assert "API key not valid" in attempt["error"]  # the gateway's own words, for the operator
    (warning,) = err.splitlines()
    assert warning.startswith("warning: google failed, so mule answered instead: ") and "rejected" in warning
    assert KEY not in out + err


async def test_a_rejected_key_exits_5_naming_the_variable(gw, tmp_path):
    gw.enqueue(Reply(status=401, body={"error": {"message": "invalid api key"}}), Reply(status=403))
    first, second = [assert_one_error_line(5, *await cli("generate", "hi", env=provider_env(gw, "google"),
                                                         cwd=tmp_path)) for _ in range(2)]
    for err in (first, second):
        assert "google: The gateway rejected the API key" in err and "PROVIDER_GOOGLE_API_KEY" in err
    assert "invalid api key" in first and "HTTP 403" in second
    assert len(gw.requests) == 2  # a rejected key is not retried


async def test_out_is_checked_before_any_request(gw, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    env = provider_env(gw, "google")
    runs = await asyncio.gather(cli("generate", "hi", "--out", str(a_file), env=env, cwd=tmp_path),
                                cli("generate", "hi", "--out", str(a_file / "sub"), env=env, cwd=tmp_path))
    for run in runs:
        assert "--out" in assert_one_error_line(2, *run)
    assert gw.requests == [] and a_file.read_text() == "not a directory"


async def test_count_has_the_range_of_imagine(gw, tmp_path):
    env = provider_env(gw, "google")
    too_few, too_many, four = await asyncio.gather(
        *(cli("generate", "hi", "--count", n, "--out", str(tmp_path / n), env=env, cwd=tmp_path)
          for n in ("0", "5", "4")))
    for run in (too_few, too_many):
        assert "--count must be between 1 and 4" in assert_one_error_line(2, *run)
    assert four[0] == 0, four[2]
    assert len(json.loads(four[1])["images"]) == 4 and len(gw.requests) == 4


async def test_resolution_is_case_insensitive(gw, tmp_path):
    rc, out, err = await cli("generate", "hi", "--resolution", "2k", env=provider_env(gw, "google"), cwd=tmp_path)
    assert rc == 0, err
    (request,) = gw.requests
    assert json.loads(request.body)["generationConfig"]["imageConfig"]["imageSize"] == "2K"


async def test_output_files_never_overwrite_earlier_ones(gw, tmp_path):
    # Every name this run could pick in the next two minutes is taken already; two runs at once
    # with two images each must still all land in files of their own.
    taken = {}
    now = time.time()
    for second in range(120):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now + second))
        for i in (1, 2):
            path = tmp_path / f"google-{stamp}-{i}.png"
            path.write_bytes(b"earlier %d" % len(taken))
            taken[path] = path.read_bytes()
    env = provider_env(gw, "google")
    runs = await asyncio.gather(*(cli("generate", f"run {n}", "--count", "2", "--out", str(tmp_path), env=env,
                                      cwd=tmp_path) for n in range(2)))
    paths = []
    for rc, out, err in runs:
        assert rc == 0, err
        paths += [Path(image["path"]) for image in json.loads(out)["images"]]
    assert len(set(paths)) == 4 and not set(paths) & set(taken)
    assert all(path.read_bytes() == data for path, data in taken.items())
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in paths)


async def test_list_shows_every_setting(gw, tmp_path):
    env = provider_env(gw, "mulerun", STREAM="yes", TIMEOUT="12.5")
    rc, out, err = await cli("list", env=env, cwd=tmp_path)
    assert rc == 0 and err == ""
    (line,) = out.splitlines()
    for setting in ("format=openai_chat", "auth=bearer", "stream=yes", "timeout=12.5", "max_retries=2",
                    "chat_options=prompt", "allow_private_urls=no", f"base_url={gw.url}/v1"):
        assert setting in line, setting
