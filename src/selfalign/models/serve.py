"""A small OpenAI-compatible HTTP server over any selfalign Generator (``selfalign serve``).

Useful to share one loaded model between processes, and it is what the tests start on
127.0.0.1 to exercise the ``openai`` backend over a real socket. ``fail_first`` makes the first
N requests answer 503 (or ``fail_status``) so that retries can be tested.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from selfalign.types import GenParams, GenRequest, Message


def _request_from_body(body: dict[str, Any], chat: bool) -> GenRequest:
    stop = body.get("stop") or ()
    params = GenParams(
        temperature=float(body.get("temperature", 1.0)),
        top_p=float(body.get("top_p", 1.0)),
        max_tokens=int(body.get("max_tokens") or 64),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        logprobs=bool(body.get("logprobs")),
    )
    prompt = tuple(Message(m["role"], m["content"]) for m in body["messages"]) if chat else body["prompt"]
    return GenRequest(prompt, params, n=int(body.get("n", 1)), seed=int(body.get("seed", 0)))


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
                except (KeyError, TypeError, ValueError) as e:
                    return self._send(400, {"error": {"message": f"bad request: {e}"}})
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
        return f"http://{host}:{port}/v1"

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
