"""Models, errors and authentication: every error is a 4xx with an OpenAI error object."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from conftest import API_KEY, CTX, make_client


def assert_error_object(e: openai.APIStatusError, status: tuple[int, ...]):
    assert e.status_code in status, f"status {e.status_code}: {e.response.text}"
    body = e.response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not an OpenAI error object: {body}"
    err = body["error"]
    assert isinstance(err.get("message"), str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"], err
    assert "param" in err and "code" in err, f"OpenAI error objects carry param and code (null allowed): {err}"


def test_models_list(client, model_id, server):
    models = client.models.list().data
    ids = [m.id for m in models]
    assert model_id in ids
    m = models[0]
    assert m.object == "model"
    assert "smollm2" in m.id.lower(), f"served id {m.id!r} does not name the model file {server.model.name}"


def test_models_retrieve(client, model_id):
    try:
        m = client.models.retrieve(model_id)
    except openai.NotFoundError:
        pytest.skip("GET /v1/models/{id} is not served")
    assert m.id == model_id


def test_max_tokens_over_context(client, model_id):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=CTX + 1)
    assert_error_object(e.value, (400,))


def test_prompt_over_context(client, model_id):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id, prompt="word " * (CTX + 10), max_tokens=4)
    assert_error_object(e.value, (400,))


def test_unknown_model(client):
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=4)
    assert_error_object(e.value, (400, 404))


@pytest.mark.parametrize("bad", [
    {"messages": []},
    {"messages": [{"role": "user", "content": "Hi"}], "temperature": -1},
    {"messages": [{"role": "user", "content": "Hi"}], "n": 0},
    {"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 50, "logprobs": True},
    {"messages": [{"role": "wizard", "content": "Hi"}]},
])
def test_invalid_requests(client, model_id, bad):
    with pytest.raises((openai.BadRequestError, openai.UnprocessableEntityError)) as e:
        client.chat.completions.create(model=model_id, max_tokens=4, **bad)
    assert_error_object(e.value, (400, 422))


def test_malformed_json_body(server):
    req = urllib.request.Request(server.base_url + "/chat/completions", data=b'{"model": "x", "messages": [',
                                 headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code in (400, 422)
    body = json.loads(e.value.read())
    assert isinstance(body.get("error"), dict) and body["error"].get("message"), body


def test_wrong_api_key(keyed_server):
    bad = make_client(keyed_server.base_url, api_key="wrong-key")
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert_error_object(e.value, (401,))
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_right_api_key(keyed_server):
    good = make_client(keyed_server.base_url, api_key=API_KEY)
    model = good.models.list().data[0].id
    r = good.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert r.choices[0].message.content is not None
