"""The openai backend against a real OpenAI-compatible server on 127.0.0.1."""

import json

import pytest

from selfalign.models.base import ModelError
from selfalign.models.openai_compat import OpenAICompatModel, request_body
from selfalign.models.scripted import ScriptedModel
from selfalign.models.serve import OpenAIServer
from selfalign.store.cache import CachedModel, Store
from selfalign.types import GenParams, GenRequest, user


def scripted():
    return ScriptedModel(rules={"France": "Paris", "fruit": lambda t, i, s: f"fruit-{s % 97}"}, default="idk")


def test_chat_and_text_completions_over_http():
    with OpenAIServer(scripted()) as srv:
        m = OpenAICompatModel("tiny", base_url=srv.base_url, concurrency=4)
        res = m.generate([GenRequest(user("capital of France?"), GenParams(max_tokens=5)),
                          GenRequest("raw text prompt", GenParams(max_tokens=5))])
        assert res[0].texts == ["Paris"]
        assert res[1].texts == ["idk"]


def test_each_sample_carries_its_own_seed():
    with OpenAIServer(scripted()) as srv:
        m = OpenAICompatModel("tiny", base_url=srv.base_url, concurrency=4)
        req = GenRequest(user("name a fruit"), GenParams(temperature=1.0), n=5, seed=11)
        a = m.generate([req])[0].texts
        b = m.generate([GenRequest(user("name a fruit"), GenParams(temperature=1.0), n=5, seed=11, indices=(3,))])[0].texts
        assert len(set(a)) > 1 and b == [a[3]]


def test_retries_on_503_then_succeeds():
    with OpenAIServer(scripted(), fail_first=2, fail_status=503) as srv:
        m = OpenAICompatModel("tiny", base_url=srv.base_url, backoff=0.01)
        assert m.generate([GenRequest(user("capital of France?"))])[0].texts == ["Paris"]
        assert srv.requests_seen == 3


def test_gives_up_with_a_clear_error():
    with OpenAIServer(scripted(), fail_first=100, fail_status=429) as srv:
        m = OpenAICompatModel("tiny", base_url=srv.base_url, backoff=0.001, max_retries=2)
        with pytest.raises(ModelError, match="gave up after 3 tries"):
            m.generate([GenRequest(user("hi"))])


def test_client_errors_are_not_retried():
    with OpenAIServer(scripted(), fail_first=1, fail_status=400) as srv:
        m = OpenAICompatModel("tiny", base_url=srv.base_url, backoff=0.001)
        with pytest.raises(ModelError, match="HTTP 400"):
            m.generate([GenRequest(user("hi"))])
        assert srv.requests_seen == 1


def test_connection_refused_is_retried_then_reported():
    m = OpenAICompatModel("tiny", base_url="http://127.0.0.1:9/v1", backoff=0.001, max_retries=1, timeout=2)
    with pytest.raises(ModelError, match="ConnectError"):
        m.generate([GenRequest(user("hi"))])


def test_api_key_is_sent_but_never_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    with OpenAIServer(scripted()) as srv:
        m = OpenAICompatModel("tiny", base_url=srv.base_url, api_key_env="MY_KEY")
        assert m.client.headers["Authorization"] == "Bearer sk-secret-123"
        store = Store(tmp_path / "s.sqlite")
        CachedModel(m, store, progress=False).generate([GenRequest(user("capital of France?"))])
    dump = "\n".join(store.db.iterdump())
    assert "sk-secret-123" not in dump and "sk-secret" not in m.model_id


def test_request_body_mapping():
    path, body = request_body("m", GenRequest(user("q"), GenParams(temperature=0.7, top_p=0.9, max_tokens=7,
                                                                     stop=("\n",), logprobs=True), n=3, seed=1), 2)
    assert path == "/chat/completions"
    assert body["messages"] == [{"role": "user", "content": "q"}]
    assert body["n"] == 1 and body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["max_tokens"] == 7
    assert body["stop"] == ["\n"] and body["logprobs"] is True
    _, body3 = request_body("m", GenRequest(user("q"), n=3, seed=1), 1)
    assert body3["seed"] != body["seed"]


def test_stream_is_server_sent_events_not_an_empty_body():
    import httpx

    with OpenAIServer(scripted()) as srv:
        body = {"model": "x", "messages": [{"role": "user", "content": "capital of France?"}], "n": 2, "stream": True}
        with httpx.stream("POST", srv.base_url + "/chat/completions", json=body, timeout=10) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = {i: "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"][0]["index"] == i)
            for i in (0, 1)}
    assert text[0] and text[1]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]]
    assert len(finish) == 2


def test_a_malformed_request_gets_a_400_naming_the_field():
    import httpx

    with OpenAIServer(scripted()) as srv:
        cases = {
            "messages[0].content is required": {"messages": [{"role": "user"}]},
            "messages[1].role is required": {"messages": [{"role": "user", "content": "a"}, {"content": "b"}]},
            "messages is required": {"model": "x"},
            "temperature must be a number": {"messages": [{"role": "user", "content": "a"}], "temperature": "hot"},
        }
        for message, body in cases.items():
            r = httpx.post(srv.base_url + "/chat/completions", json=body, timeout=10)
            assert r.status_code == 400 and message in r.json()["error"]["message"], (message, r.text)
        r = httpx.post(srv.base_url + "/completions", json={"max_tokens": 3}, timeout=10)
        assert r.status_code == 400 and "prompt is required" in r.json()["error"]["message"]


def test_selfalign_serve_command_answers(tmp_path):
    """`selfalign serve` as a user starts it: a process on 127.0.0.1 that lists its model."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": {"France": "Paris."}, "default": "?"}))
    proc = subprocess.Popen([sys.executable, "-m", "selfalign.cli", "serve", "--model", f"scripted:{rules}",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(proc.stderr.read1().decode() if proc.stderr else "no answer")
        assert r.json()["data"][0]["id"] == "scripted:rules.json"
        out = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                         json={"messages": [{"role": "user", "content": "capital of France?"}]}).json()
        assert out["choices"][0]["message"]["content"] == "Paris."
    finally:
        proc.terminate()
        proc.wait(timeout=10)
