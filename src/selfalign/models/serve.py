"""A small OpenAI-compatible HTTP server over any selfalign Generator (``selfalign serve``).

Useful to share one loaded model between processes, and it is what the tests start on
127.0.0.1 to exercise the ``openai`` backend over a real socket. ``fail_first`` makes the first
N requests answer 503 (or ``fail_status``) so that retries can be tested.

``stream: true`` is answered with server-sent events in the OpenAI chunk format: the backends
generate whole completions, so each choice arrives as one content chunk, then a chunk with its
finish reason, then ``data: [DONE]``. A malformed request gets a 400 whose message names the
field (``messages[0].content is required``).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from selfalign.types import GenParams, GenRequest, Message


class BadRequest(ValueError):
    pass


def _number(body: dict[str, Any], key: str, default: float, kind: type = float) -> Any:
    value = body.get(key)
    if value is None:
        return kind(default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be a number, got {value!r}")
    return kind(value)


def _messages(body: dict[str, Any]) -> tuple[Message, ...]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages is required: a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object with role and content")
        for key in ("role", "content"):
            if key not in m or m[key] is None:
                raise BadRequest(f"messages[{i}].{key} is required")
            if not isinstance(m[key], str):
                raise BadRequest(f"messages[{i}].{key} must be a string")
        out.append(Message(m["role"], m["content"]))
    return tuple(out)


def _request_from_body(body: dict[str, Any], chat: bool) -> GenRequest:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    stop = body.get("stop") or []
    if not isinstance(stop, (str, list)) or (isinstance(stop, list) and not all(isinstance(x, str) for x in stop)):
        raise BadRequest("stop must be a string or a list of strings")
    params = GenParams(
        temperature=_number(body, "temperature", 1.0),
        top_p=_number(body, "top_p", 1.0),
        max_tokens=_number(body, "max_tokens", 64, int) or 64,
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        logprobs=bool(body.get("logprobs")),
    )
    if chat:
        prompt: Any = _messages(body)
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("prompt is required: a string")
    n = _number(body, "n", 1, int)
    if n < 1:
        raise BadRequest(f"n must be >= 1, got {n}")
    return GenRequest(prompt, params, n=n, seed=_number(body, "seed", 0, int))


class OpenAIServer:
    def __init__(self, generator, host: str = "127.0.0.1", port: int = 0, fail_first: int = 0, fail_status: int = 503):
        self.generator = generator
        self.fail_left = fail_first
        self.fail_status = fail_status
        self.requests_seen = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, res: Any, chat: bool, model: str) -> None:
                """Server-sent events: per choice one content chunk and one finish chunk, then [DONE]."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                base = {"id": f"cmpl-{server.requests_seen}", "created": int(time.time()), "model": model,
                        "object": "chat.completion.chunk" if chat else "text_completion"}
                for c in res.completions:
                    first = {"index": c.index, "finish_reason": None}
                    last = {"index": c.index, "finish_reason": c.finish_reason}
                    if chat:
                        first["delta"] = {"role": "assistant", "content": c.text}
                        last["delta"] = {}
                    else:
                        first["text"], last["text"] = c.text, ""
                    for choice in (first, last):
                        self.wfile.write(f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, {"object": "list", "data": [{"id": server.generator.model_id, "object": "model"}]})
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError as e:
                    return self._send(400, {"error": {"message": f"invalid JSON: {e}"}})
                with server.lock:
                    server.requests_seen += 1
                    if server.fail_left > 0:
                        server.fail_left -= 1
                        return self._send(server.fail_status, {"error": {"message": "try again"}})
                chat = self.path.rstrip("/").endswith("/chat/completions")
                if not chat and not self.path.rstrip("/").endswith("/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    req = _request_from_body(body, chat)
                except (BadRequest, ValueError) as e:
                    return self._send(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
                with server.lock:  # one generation at a time: backends are not thread-safe
                    res = server.generator.generate([req])[0]
                choices = []
                for c in res.completions:
                    choice: dict[str, Any] = {"index": c.index, "finish_reason": c.finish_reason}
                    if chat:
                        choice["message"] = {"role": "assistant", "content": c.text}
                        if c.token_logprobs is not None:
                            choice["logprobs"] = {"content": [{"token": "", "logprob": x} for x in c.token_logprobs]}
                    else:
                        choice["text"] = c.text
                    choices.append(choice)
                n_tok = sum(c.n_tokens for c in res.completions)
                if body.get("stream"):
                    return self._stream(res, chat, body.get("model", server.generator.model_id))
                self._send(200, {
                    "id": f"cmpl-{server.requests_seen}", "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()), "model": body.get("model", server.generator.model_id),
                    "choices": choices,
                    "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": n_tok,
                              "total_tokens": res.prompt_tokens + n_tok},
                })

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{name}:{port}/v1"

    def start(self) -> "OpenAIServer":
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
