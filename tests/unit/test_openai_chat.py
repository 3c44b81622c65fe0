"""providers.openai_chat: requests per seed (MuleRun, InfinityBlue, OpenRouter), liberal parsing."""
from __future__ import annotations

import base64
import json
import os

import pytest

from fakes.images import jpeg, png, webp
from providers import openai_chat
from providers.base import ProviderConfig
from providers.errors import (AuthError, MalformedResponse, NoImageError, RateLimitError, RefusedError,
                              ServerError)
from providers.images import decode_base64, to_image
from providers.models import GenerationRequest, Turn

MULE = ProviderConfig(name="mulerun", format="openai_chat", base_url="https://api.mulerun.com/v1",
                      api_key="mule-key", model="gemini-2.5-flash-image-preview", preset="mulerun",
                      chat_options="prompt")
INFINITY = ProviderConfig(name="infinityblue", format="openai_chat", base_url="https://api.getinfinityblue.com/v1",
                          api_key="ib-key", model="nanobanana_pro", preset="infinityblue",
                          chat_options="extra_body", chat_string_content=True)
OPENROUTER = ProviderConfig(name="openrouter", format="openai_chat", base_url="https://openrouter.ai/api/v1",
                            api_key="or-key", model="google/gemini-2.5-flash-image", preset="openrouter",
                            chat_options="image_config", stream=True)

PNG, JPG, WEBP = png((64, 48)), jpeg((32, 16)), webp((20, 10))
PNG_B64 = base64.b64encode(PNG).decode()
JPG_B64 = base64.b64encode(JPG).decode()


def body_of(*messages, **extra) -> bytes:
    choices = [{"index": 0, "message": m, "finish_reason": extra.pop("finish_reason", "stop")} for m in messages]
    return json.dumps({"choices": choices, **extra}).encode()


def events(*chunks) -> list[bytes]:
    return [json.dumps(c).encode() for c in chunks]


def delta(d, finish=None, **extra) -> dict:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}], **extra}


# --- requests --------------------------------------------------------------------------------

def test_mulerun_text_to_image_request_matches_seed():
    req = openai_chat.build_request(MULE, GenerationRequest("Create a picture of mule"))
    assert (req.method, req.url, req.stream) == ("POST", "https://api.mulerun.com/v1/chat/completions", False)
    assert req.headers["Authorization"] == "Bearer mule-key"
    assert req.headers["Content-Type"] == "application/json"
    assert req.json == {"model": "gemini-2.5-flash-image-preview", "stream": False, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Create a picture of mule"}]}]}


def test_mulerun_image_to_image_and_prompt_hint():
    req = openai_chat.build_request(MULE, GenerationRequest(
        "Create a picture of a mule with a similar style", images=(to_image(PNG),),
        aspect_ratio="16:9", resolution="2K", count=3))
    [msg] = req.json["messages"]
    assert msg["role"] == "user"
    text, image = msg["content"]
    assert text == {"type": "text",
                    "text": "Create a picture of a mule with a similar style\n\nAspect ratio 16:9, 2K resolution."}
    assert image == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
    # no documented options, no n (chat cannot ask for several images)
    assert set(req.json) == {"model", "stream", "messages"}


def test_infinityblue_string_content_and_extra_body():
    req = openai_chat.build_request(INFINITY, GenerationRequest(
        "Draw a cat sitting on a rooftop under moonlight", aspect_ratio="16:9", resolution="2K"))
    assert req.url == "https://api.getinfinityblue.com/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer ib-key"
    assert req.json == {
        "model": "nanobanana_pro", "stream": False,
        "messages": [{"role": "user", "content": "Draw a cat sitting on a rooftop under moonlight"}],
        "extra_body": {"google": {"image_config": {"aspect_ratio": "16:9", "image_size": "2K"}}},
    }


def test_infinityblue_only_set_keys_and_parts_when_images():
    req = openai_chat.build_request(INFINITY, GenerationRequest("x", aspect_ratio="1:1"))
    assert req.json["extra_body"] == {"google": {"image_config": {"aspect_ratio": "1:1"}}}
    req = openai_chat.build_request(INFINITY, GenerationRequest("edit", images=(to_image(JPG),)))
    assert "extra_body" not in req.json
    assert req.json["messages"][0]["content"] == [
        {"type": "text", "text": "edit"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPG_B64}"}}]


def test_openrouter_modalities_and_image_config():
    req = openai_chat.build_request(OPENROUTER, GenerationRequest("a fox", resolution="4K"))
    assert req.url == "https://openrouter.ai/api/v1/chat/completions" and req.stream is True
    assert req.json["stream"] is True and req.json["model"] == "google/gemini-2.5-flash-image"
    assert req.json["modalities"] == ["image", "text"]
    assert req.json["image_config"] == {"image_size": "4K"}
    assert "image_config" not in openai_chat.build_request(OPENROUTER, GenerationRequest("a fox")).json


def test_second_turn_carries_the_first_output_image():
    first_out = to_image(PNG)
    history = (Turn("user", "a red square"), Turn("model", "Here it is.", images=(first_out,)))
    for cfg in (MULE, INFINITY, OPENROUTER):
        req = openai_chat.build_request(cfg, GenerationRequest("make it blue", history=history))
        msgs = req.json["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        assert msgs[1]["content"] == "Here it is."
        last = msgs[2]["content"]
        assert last[0] == {"type": "text", "text": "make it blue"}
        assert last[1] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
    assert msgs[0]["content"] == [{"type": "text", "text": "a red square"}]
    inf = openai_chat.build_request(INFINITY, GenerationRequest("make it blue", history=history)).json
    assert inf["messages"][0]["content"] == "a red square"  # text-only user turn as a string


def test_history_resends_only_the_latest_model_image_plus_new_attachments():
    old, new, attach, ref = to_image(PNG), to_image(JPG), to_image(WEBP), to_image(png((5, 5)))
    history = (Turn("user", "one", images=(ref,)), Turn("model", "", images=(old,)),
               Turn("user", "two"), Turn("model", "done", images=(new,)))
    msgs = openai_chat.build_request(MULE, GenerationRequest("three", images=(attach,), history=history)).json["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == "[image]"  # never an empty assistant message
    assert decode_base64(msgs[0]["content"][1]["image_url"]["url"]) == ref.data  # user references kept
    assert len(msgs[2]["content"]) == 1  # the superseded output is not re-sent
    urls = [p["image_url"]["url"] for p in msgs[4]["content"][1:]]
    assert [decode_base64(u) for u in urls] == [new.data, attach.data]


# --- parsing: shapes A, A', B, C, D ----------------------------------------------------------

def _one(answer, data=PNG, size=(64, 48), mime="image/png"):
    assert len(answer.images) == 1
    img = answer.images[0]
    assert (img.data, img.mime_type, (img.width, img.height)) == (data, mime, size)


def test_mulerun_seed_response_raw_base64_part():
    body = {"choices": [{"message": {"role": "assistant", "content": [
        {"image_url": {"url": PNG_B64}, "type": "image_url"}]}, "index": 0, "finish_reason": "STOP"}],
        "usage": {"audioTokens": None, "completion_tokens": 1290, "prompt_tokens": 6, "total_tokens": 1296,
                  "cache_creation_input_tokens": None, "cache_read_input_tokens": None}}
    answer = openai_chat.parse_response(MULE, json.dumps(body).encode())
    _one(answer)
    assert answer.finish_reason == "STOP" and answer.text == ""
    assert answer.usage["total_tokens"] == 1296 and "audio_tokens" not in answer.usage


def test_infinityblue_markdown_string_jpeg_declared_png():
    content = f"Here you go!\n\n![image](data:image/png;base64,{JPG_B64})"
    answer = openai_chat.parse_response(INFINITY, body_of({"role": "assistant", "content": content},
                                                          model="nanobanana_pro"))
    _one(answer, JPG, (32, 16), "image/jpeg")
    assert answer.text == "Here you go!" and answer.model == "nanobanana_pro"


def test_openrouter_message_images_and_text():
    msg = {"role": "assistant", "content": "A fox.", "images": [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}, "index": 0},
        {"type": "image_url", "image_url": {"url": f"data:image/webp;base64,{base64.b64encode(WEBP).decode()}"}}]}
    answer = openai_chat.parse_response(OPENROUTER, body_of(msg))
    assert [i.mime_type for i in answer.images] == ["image/png", "image/webp"]
    assert answer.images[1].data == WEBP and answer.text == "A fox."


def test_old_litellm_message_image_and_type_image_parts():
    answer = openai_chat.parse_response(MULE, body_of({"content": None, "image": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "auto"}}))
    _one(answer)
    parts = [{"type": "text", "text": "Two:"}, {"type": "image", "image": {"base64": PNG_B64}},
             {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPG_B64}", "mime_type": "image/jpeg"}}]
    answer = openai_chat.parse_response(MULE, body_of({"content": parts}))
    assert [i.data for i in answer.images] == [PNG, JPG] and answer.text == "Two:"


def test_http_urls_are_left_for_the_client():
    parts = [{"type": "image_url", "image_url": {"url": "https://cdn.test/a.png"}}]
    answer = openai_chat.parse_response(MULE, body_of({"content": parts}))
    assert answer.images == [] and answer.image_urls == ["https://cdn.test/a.png"]
    answer = openai_chat.parse_response(INFINITY, body_of({"content": "![img](https://cdn.test/b.jpg)"}))
    assert answer.image_urls == ["https://cdn.test/b.jpg"]


def test_base64_with_newlines_several_markdown_images_and_duplicates():
    wrapped = base64.encodebytes(PNG).decode()
    content = (f"First ![a](data:image/png;base64,{wrapped}) then ![b](data:image/jpeg;base64,{JPG_B64}) done")
    msg = {"content": content, "images": [{"image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]}
    answer = openai_chat.parse_response(INFINITY, body_of(msg))
    assert [i.data for i in answer.images] == [PNG, JPG]  # the repeat in images[] is dropped
    assert answer.text == "First  then  done"


def test_bare_data_uri_or_base64_content_string():
    _one(openai_chat.parse_response(INFINITY, body_of({"content": f"data:image/png;base64,{PNG_B64}"})))
    _one(openai_chat.parse_response(INFINITY, body_of({"content": PNG_B64})))


def test_several_choices_each_with_an_image():
    body = body_of({"content": [{"type": "image_url", "image_url": {"url": PNG_B64}}]},
                   {"content": [{"type": "image_url", "image_url": {"url": JPG_B64}}]})
    assert len(openai_chat.parse_response(MULE, body).images) == 2


def test_eight_megabyte_image_in_one_body():
    big = png((16, 16)) + os.urandom(8 * 1024 * 1024)
    body = body_of({"content": f"![image](data:image/png;base64,{base64.b64encode(big).decode()})"})
    answer = openai_chat.parse_response(INFINITY, body)
    assert answer.images[0].data == big and answer.images[0].width == 16


# --- refusals, empty answers, errors ---------------------------------------------------------

def test_text_only_answer_is_an_empty_parsed_answer():
    answer = openai_chat.parse_response(MULE, body_of({"content": "I can't draw that."}, finish_reason="STOP"))
    assert answer.images == [] and answer.text == "I can't draw that."


def test_content_filter_is_refused_with_native_reason():
    body = json.dumps({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter",
                                    "native_finish_reason": "IMAGE_SAFETY"}]}).encode()
    with pytest.raises(RefusedError) as exc:
        openai_chat.parse_response(OPENROUTER, body)
    assert exc.value.reason == "IMAGE_SAFETY" and exc.value.provider == "openrouter"
    with pytest.raises(RefusedError) as exc:
        openai_chat.parse_response(MULE, body_of({"content": "nope"}, finish_reason="content_filter"))
    assert exc.value.reason == "content_filter" and exc.value.model_text == "nope"


def test_native_no_image_and_message_refusal():
    body = json.dumps({"choices": [{"message": {"content": "hm"}, "finish_reason": "stop",
                                    "native_finish_reason": "NO_IMAGE"}]}).encode()
    with pytest.raises(NoImageError):
        openai_chat.parse_response(OPENROUTER, body)
    with pytest.raises(RefusedError) as exc:
        openai_chat.parse_response(MULE, body_of({"content": None, "refusal": "I won't."}))
    assert exc.value.model_text == "I won't."


def test_empty_choices():
    answer = openai_chat.parse_response(MULE, b'{"choices": [], "usage": {"prompt_tokens": 3}}')
    assert answer.images == [] and answer.usage["input_tokens"] == 3
    with pytest.raises(RefusedError):
        openai_chat.parse_response(MULE, b'{"choices": [], "promptFeedback": {"blockReason": "SAFETY"}}')


def test_error_object_inside_a_200_body():
    body = b'{"error": {"message": "Rate limit", "code": 429, "metadata": {"provider_name": "Google"}}}'
    with pytest.raises(RateLimitError):
        openai_chat.parse_response(OPENROUTER, body)
    with pytest.raises(AuthError):
        openai_chat.parse_response(MULE, b'{"error": {"message": "bad token", "type": "401"}}')


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b"", b"[1, 2]", b'"str"',
                                  b'{"choices": [{"message": {"content": [{"type": "image_url", "image_url": {"url": "@@@@"}}]}}]}',
                                  b'{"choices": "nope"}'])
def test_malformed_bodies(body):
    with pytest.raises(MalformedResponse):
        openai_chat.parse_response(MULE, body)


# --- streams ---------------------------------------------------------------------------------

def test_mulerun_seed_stream():
    evs = events(
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": [
            {"image_url": {"url": PNG_B64}, "type": "image_url"}]}, "finish_reason": "STOP"}],
         "usage": {"completion_tokens": 1290, "prompt_tokens": 6, "total_tokens": 1296}},
        {"id": "", "object": "chat.completion.chunk", "created": 0, "model": "gemini-2.5-flash-image-preview",
         "choices": [], "usage": {"prompt_tokens": 13, "completion_tokens": 0, "total_tokens": 13,
                                  "input_tokens": 0, "output_tokens": 0, "input_tokens_details": None}})
    answer = openai_chat.parse_stream(MULE, evs)
    _one(answer)
    assert answer.finish_reason == "STOP" and answer.model == "gemini-2.5-flash-image-preview"
    assert answer.usage["output_tokens"] == 1290


def test_markdown_split_across_string_deltas():
    content = f"Sure! ![image](data:image/jpeg;base64,{JPG_B64}) Enjoy."
    cuts = [0, 3, 9, 30, len(content) // 2, len(content) - 4, len(content)]
    evs = events(*[delta({"content": content[a:b]}) for a, b in zip(cuts, cuts[1:])], delta({}, "stop"))
    answer = openai_chat.parse_stream(INFINITY, evs)
    _one(answer, JPG, (32, 16), "image/jpeg")
    assert answer.text == "Sure!  Enjoy." and answer.finish_reason == "stop"


def test_openrouter_stream_delta_images_and_old_delta_image():
    evs = events(delta({"role": "assistant", "content": "A "}), delta({"content": "fox"}),
                 delta({"images": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]}),
                 delta({"image": {"url": f"data:image/jpeg;base64,{JPG_B64}"}}, "stop"),
                 {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1290}})
    answer = openai_chat.parse_stream(OPENROUTER, evs)
    assert [i.data for i in answer.images] == [PNG, JPG] and answer.text == "A fox"
    assert answer.usage["input_tokens"] == 5


def test_stream_error_event_raises():
    evs = events(delta({"content": "working"}), {"error": {"message": "overloaded", "code": 503}})
    with pytest.raises(ServerError):
        openai_chat.parse_stream(OPENROUTER, evs)
    with pytest.raises(MalformedResponse):
        openai_chat.parse_stream(OPENROUTER, [b"{not json"])


def test_stream_content_filter():
    with pytest.raises(RefusedError):
        openai_chat.parse_stream(OPENROUTER, events(delta({"content": ""}, "content_filter")))


def test_error_on_a_choice_and_finish_reason_error():
    body = b'{"choices": [{"delta": {"content": ""}, "finish_reason": "error", "error": {"code": 502, "message": "upstream"}}]}'
    with pytest.raises(ServerError):
        openai_chat.parse_stream(OPENROUTER, [body])
    with pytest.raises(ServerError):
        openai_chat.parse_stream(OPENROUTER, events(delta({"content": ""}, "error")))


def test_empty_history_user_turn_is_dropped():
    history = (Turn("user", ""), Turn("model", "ok", images=(to_image(PNG),)))
    msgs = openai_chat.build_request(MULE, GenerationRequest("next", history=history)).json["messages"]
    assert [m["role"] for m in msgs] == ["assistant", "user"]


def test_latest_image_reaches_the_new_message_after_a_text_only_answer():
    out = to_image(PNG)
    history = (Turn("user", "a cat"), Turn("model", "", images=(out,)),
               Turn("user", "something forbidden"), Turn("model", "I can't do that."))
    msgs = openai_chat.build_request(MULE, GenerationRequest("make it blue instead", history=history)).json["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"] == [{"type": "text", "text": "something forbidden"}]
    assert decode_base64(msgs[4]["content"][1]["image_url"]["url"]) == PNG
