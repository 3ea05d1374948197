"""An OpenAI-compatible HTTP server over any selfalign Generator (``selfalign serve``).

Built on FastAPI + uvicorn (the ``serve`` extra). It shares one loaded model between processes,
and the tests start it on 127.0.0.1 to exercise the ``openai`` backend over a real socket.

What it defends against (see ``docs/serve.md``; every limit is a :class:`Limits` field and a
``selfalign serve`` option): an API key (``Authorization: Bearer``, compared in constant time);
a body size limit checked on ``Content-Length`` before anything is read and again while the body
streams in; ``n``, ``max_tokens`` and the prompt against the model's context; finite, in-range
``temperature`` / ``top_p``; invalid UTF-8 or JSON answered with a 400 that names the problem;
one generation thread fed by a bounded queue (429 when full, 504 past the request time limit);
timeouts on slow headers, slow bodies and idle keep-alive connections; a cap on connections.

Backends are not thread-safe, so one worker thread runs every generation; it takes up to
``max_batch`` queued requests at a time and sends them to the backend as one batch.

``stream: true`` is answered with server-sent events in the OpenAI chunk format: the backends
generate whole completions, so each choice arrives as one content chunk, then a chunk with its
finish reason, then ``data: [DONE]``.

``fail_first`` makes the first N requests answer 503 (or ``fail_status``) so that retries can be
tested.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import ipaddress
import json
import math
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from selfalign.models.base import context_length
from selfalign.types import GenParams, GenRequest, GenResult, Message

ROLES = ("system", "user", "assistant")
MISSING_EXTRA = "selfalign serve needs FastAPI and uvicorn: pip install 'selfalign[serve]'"


class BadRequest(ValueError):
    """A request the server refuses: ``status`` is the HTTP status, the message names the limit."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.headers = headers or {}


@dataclass(frozen=True)
class Limits:
    """What one request, and the server as a whole, may ask for."""

    #: bytes in a request body (413 above it; checked on Content-Length before reading)
    max_body_bytes: int = 1 << 20
    #: choices per request
    max_n: int = 16
    #: max_tokens when a request gives none
    default_max_tokens: int = 256
    #: the most max_tokens a request may ask for; None: the model's context (or 4096 if unknown)
    max_tokens: int | None = None
    #: prompt tokens + max_tokens must fit in this; None: the model's own context length
    context_length: int | None = None
    #: strings in ``stop``
    max_stop: int = 16
    #: requests waiting for the generation thread (429 beyond it)
    max_queue: int = 64
    #: requests sent to the backend in one call
    max_batch: int = 8
    #: seconds from a request's arrival to its answer (queueing and generation); 504 past it
    request_timeout: float = 300.0
    #: seconds for a client to send its request headers / its whole body
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    #: seconds an idle keep-alive connection stays open
    keep_alive: int = 5
    #: bytes of request line and headers (h11's incomplete event limit)
    max_header_bytes: int = 64 * 1024
    #: open connections and requests in flight (503 beyond it)
    max_connections: int = 256


UNKNOWN_CONTEXT_MAX_TOKENS = 4096


# ----------------------------------------------------------------------------- request parsing
def _finite(body: dict[str, Any], key: str, default: float, low: float, high: float, low_open: bool = False) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be a number, got {value!r}", param=key)
    if not math.isfinite(value):
        raise BadRequest(f"{key} must be a finite number, got {value}", param=key)
    if value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise BadRequest(f"{key} must be in {bracket}{low:g}, {high:g}], got {value}", param=key)
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int | None, low: int, high: int, why: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"{key} must be an integer, got {value!r}", param=key)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise BadRequest(f"{key} must be an integer, got {value}", param=key)
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low} and {high}{why}, got {value:g}", param=key)
    return int(value)


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # [{"type": "text", "text": ...}, ...]
        texts = []
        for j, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise BadRequest(f"{where}[{j}] must be a text part {{type: 'text', text: ...}}", param=where)
            texts.append(part["text"])
        return "".join(texts)
    raise BadRequest(f"{where} must be a string", param=where)


def _messages(body: dict[str, Any]) -> tuple[Message, ...]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages is required: a non-empty list of {role, content}", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise BadRequest(f"messages[{i}] must be an object with role and content", param="messages")
        for key in ("role", "content"):
            if key not in m or m[key] is None:
                raise BadRequest(f"messages[{i}].{key} is required", param="messages")
        if not isinstance(m["role"], str):
            raise BadRequest(f"messages[{i}].role must be a string", param="messages")
        if m["role"] not in ROLES:
            raise BadRequest(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m['role']!r}", param="messages")
        role: Any = m["role"]  # one of ROLES, checked above
        out.append(Message(role, _content(m["content"], f"messages[{i}].content")))
    return tuple(out)


@dataclass(frozen=True)
class ParsedRequest:
    request: GenRequest
    chat: bool
    stream: bool = False
    include_usage: bool = False
    model: str | None = None


def parse_request(body: Any, chat: bool, limits: Limits = Limits()) -> ParsedRequest:
    """Validate an OpenAI request body; :class:`BadRequest` names the first field that is wrong.
    The prompt's length against the context is checked later, by the generation thread."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    stop = body.get("stop") or []
    if not isinstance(stop, (str, list)) or (isinstance(stop, list) and not all(isinstance(x, str) and x for x in stop)):
        raise BadRequest("stop must be a string or a list of non-empty strings", param="stop")
    stop = [stop] if isinstance(stop, str) else stop
    if len(stop) > limits.max_stop:
        raise BadRequest(f"stop has {len(stop)} strings; the limit is {limits.max_stop}", param="stop")
    key = "max_completion_tokens" if body.get("max_tokens") is None and body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, key, limits.default_max_tokens, 1, 2**31 - 1)
    params = GenParams(
        temperature=_finite(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_finite(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        max_tokens=max_tokens or limits.default_max_tokens,
        stop=tuple(stop),
        logprobs=bool(body.get("logprobs")),
    )
    if chat:
        prompt: Any = _messages(body)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise BadRequest("prompt is required: a string", param="prompt")
    n = _integer(body, "n", 1, 1, limits.max_n, " (the server's --max-n)")
    seed = _integer(body, "seed", 0, 0, 2**63 - 1)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", param="stream")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise BadRequest("stream_options must be an object", param="stream_options")
    model = body.get("model")
    return ParsedRequest(GenRequest(prompt, params, n=n or 1, seed=seed or 0), chat, stream,
                         bool(opts.get("include_usage")), model if isinstance(model, str) else None)


def parse_body(raw: bytes) -> Any:
    """Bytes to JSON: invalid UTF-8 and invalid JSON are 400s that say where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the request body is not valid UTF-8 (byte {e.start})") from None
    if not text.strip():
        raise BadRequest("the request body is empty: send a JSON object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"invalid JSON: {e}") from None
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply") from None


# ----------------------------------------------------------------------------- exposure
def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, api_key: str | None, insecure_no_key: bool) -> tuple[str | None, str | None]:
    """(error, warning) for serving on ``host``: beyond loopback without a key is an error unless
    ``insecure_no_key``; beyond loopback at all earns a warning (plain HTTP, no TLS)."""
    if is_loopback(host):
        return None, None
    if not api_key and not insecure_no_key:
        return (f"--host {host} serves beyond this machine with no API key: set --api-key or $SELFALIGN_API_KEY "
                "(or pass --insecure-no-key to serve anyone who can reach the port)"), None
    if not api_key:
        return None, (f"WARNING: serving on {host} with NO API KEY: anyone who can reach this port can use the model "
                      "and its compute. Plain HTTP: put it behind TLS if it crosses a network you do not trust.")
    return None, (f"WARNING: serving on {host}, reachable beyond this machine (API key required). Plain HTTP: the key "
                  "and the prompts travel unencrypted unless a TLS proxy sits in front.")


# ----------------------------------------------------------------------------- the generation thread
class _Abandoned(Exception):
    pass


@dataclass
class _Job:
    request: GenRequest
    deadline: float
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    abandoned: bool = False


class Engine:
    """One thread runs every generation, fed by a bounded queue of jobs."""

    def __init__(self, generator: Any, limits: Limits):
        self.generator = generator
        self.limits = limits
        # the model itself behind a store wrapper (CachedModel): its tokenizer and context
        self.model = getattr(generator, "backend", generator)
        self.context = limits.context_length or context_length(self.model)
        self.jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=limits.max_queue)
        self.thread = threading.Thread(target=self._loop, name="selfalign-serve-generate", daemon=True)
        self.thread.start()

    def submit(self, request: GenRequest) -> _Job:
        if not self.thread.is_alive():
            raise BadRequest("the generation thread has stopped: restart the server", status=503)
        self.check_budget(request)
        job = _Job(request, time.monotonic() + self.limits.request_timeout)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise BadRequest(f"the server's queue is full ({self.limits.max_queue} requests waiting, --max-queue); "
                             "retry later", status=429, headers={"Retry-After": "1"}) from None
        return job

    def close(self) -> None:
        try:
            self.jobs.put(None, timeout=1)
        except queue.Full:
            pass

    def prompt_tokens(self, request: GenRequest) -> int:
        encode = getattr(self.model, "encode_prompt", None)
        if callable(encode):
            return len(encode(request.prompt))
        from selfalign.models.scripted import prompt_text

        return len(prompt_text(request.prompt).split())  # a word count where the backend has no tokenizer

    def check_budget(self, request: GenRequest) -> None:
        """max_tokens against its cap (no tokenizer needed: checked before the request queues)."""
        asked = request.params.max_tokens
        cap = self.limits.max_tokens or (self.context if self.context else UNKNOWN_CONTEXT_MAX_TOKENS)
        if asked > cap:
            why = ("--max-tokens" if self.limits.max_tokens else "the model's context" if self.context
                   else "the model's context is unknown: set --context-length or --max-tokens")
            raise BadRequest(f"max_tokens is {asked}; the limit is {cap} ({why})", param="max_tokens")

    def check_length(self, request: GenRequest) -> None:
        """Prompt tokens + max_tokens against the context (tokenises: runs on the generation thread)."""
        asked = request.params.max_tokens
        if self.context:
            used = self.prompt_tokens(request)
            if used + asked > self.context:
                raise BadRequest(f"the prompt is {used} tokens and max_tokens is {asked}: {used + asked} > the model's "
                                 f"context of {self.context} tokens", param="messages" if not isinstance(request.prompt, str) else "prompt")

    def _loop(self) -> None:
        while True:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.limits.max_batch:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)
                    break
                batch.append(job)
            live = []
            for job in batch:
                if not job.future.set_running_or_notify_cancel():
                    continue  # its client gave up while it waited
                if job.abandoned or time.monotonic() > job.deadline:
                    job.future.set_exception(_Abandoned())
                    continue
                try:
                    self.check_length(job.request)
                except Exception as e:  # noqa: BLE001 - any tokenisation error is the request's
                    job.future.set_exception(e)
                    continue
                live.append(job)
            if live:
                self._run(live)

    def _run(self, jobs: list[_Job]) -> None:
        deadline = max(j.deadline for j in jobs)

        def check(*_: Any) -> None:  # called by the backend after each sample: a cooperative stop
            if all(j.abandoned for j in jobs) or time.monotonic() > deadline:
                raise _Abandoned()

        try:
            results = self.generator.generate([j.request for j in jobs], progress=check)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request(s); the thread lives on
            e = exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")
            if len(jobs) > 1 and not isinstance(e, _Abandoned):
                for job in jobs:  # one request's failure must not fail the others
                    self._run([job])
                return
            for job in jobs:
                job.future.set_exception(e)
            return
        for job, res in zip(jobs, results):
            job.future.set_result(res)


# ----------------------------------------------------------------------------- HTTP
def _error(status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> Any:
    from fastapi.responses import JSONResponse

    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            413: "invalid_request_error", 429: "rate_limit_error"}.get(status, "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status, headers=headers)


def _header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers take over ``seconds``
    (uvicorn itself only times out idle keep-alive connections)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request on this connection gets its own header deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return Protocol


class OpenAIServer:
    """The server bound to ``host:port`` (0: a free port) at construction; :meth:`start` serves in
    a background thread, :meth:`serve_forever` in this one."""

    def __init__(self, generator: Any, host: str = "127.0.0.1", port: int = 0, fail_first: int = 0,
                 fail_status: int = 503, api_key: str | None = None, limits: Limits | None = None,
                 log_level: str = "warning"):
        try:
            import uvicorn
            from fastapi import FastAPI  # noqa: F401
        except ImportError:
            raise ImportError(MISSING_EXTRA) from None
        self.generator = generator
        self.limits = limits or Limits()
        self.api_key = api_key or None
        self.fail_left = fail_first
        self.fail_status = fail_status
        self.requests_seen = 0
        self._count = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(256)
        self.sock.setblocking(False)
        self.engine: Engine | None = None
        self.app = self._build_app()
        lim = self.limits
        self.config = uvicorn.Config(self.app, log_level=log_level, access_log=False, lifespan="off",
                                     http=_header_timeout_protocol(lim.header_timeout), ws="none",
                                     timeout_keep_alive=lim.keep_alive, limit_concurrency=lim.max_connections,
                                     h11_max_incomplete_event_size=lim.max_header_bytes, timeout_graceful_shutdown=5,
                                     server_header=False)
        self.server = uvicorn.Server(self.config)
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the app
    def _build_app(self) -> Any:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, StreamingResponse
        from starlette.exceptions import HTTPException

        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        srv = self

        @app.exception_handler(HTTPException)
        async def http_error(request: Request, exc: HTTPException) -> Any:
            return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

        @app.exception_handler(BadRequest)
        async def bad_request(request: Request, exc: BadRequest) -> Any:
            return _error(exc.status, str(exc), exc.param, exc.headers)

        def authorise(request: Request) -> None:
            if srv.api_key is None:
                return
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), srv.api_key.encode()):
                raise BadRequest("a valid API key is required: Authorization: Bearer <key>", status=401,
                                 headers={"WWW-Authenticate": "Bearer"})

        # plain Starlette routes: the handler takes the raw request (FastAPI's signature analysis
        # would parse the body itself, with no size limit)
        async def health(request: Request) -> Any:
            return JSONResponse({"status": "ok"})

        async def models(request: Request) -> Any:
            authorise(request)
            return JSONResponse({"object": "list", "data": [{"id": srv.generator.model_id, "object": "model",
                                                             "owned_by": "selfalign"}]})

        async def completion(request: Request, chat: bool) -> Any:
            authorise(request)
            body = parse_body(await srv._read_body(request))
            with srv._count:
                srv.requests_seen += 1
                if srv.fail_left > 0:
                    srv.fail_left -= 1
                    return _error(srv.fail_status, "try again")
            parsed = parse_request(body, chat, srv.limits)
            res = await srv._generate(parsed.request, request)
            model = parsed.model or srv.generator.model_id
            rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
            if parsed.stream:
                return StreamingResponse(_events(res, parsed, model, rid), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache"})
            return JSONResponse(_response(res, parsed, model, rid))

        async def chat_completions(request: Request) -> Any:
            return await completion(request, True)

        async def completions(request: Request) -> Any:
            return await completion(request, False)

        app.router.add_route("/health", health, methods=["GET"])
        app.router.add_route("/v1/models", models, methods=["GET"])
        app.router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
        app.router.add_route("/v1/completions", completions, methods=["POST"])
        return app

    async def _read_body(self, request: Any) -> bytes:
        limit = self.limits.max_body_bytes
        close = {"Connection": "close"}
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"the request body is {int(declared)} bytes; the limit is {limit} (--max-body-bytes)",
                             status=413, headers=close)
        chunks: list[bytes] = []
        size = 0

        async def collect() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadRequest(f"the request body is over {limit} bytes (--max-body-bytes)", status=413, headers=close)
                chunks.append(chunk)

        try:
            await asyncio.wait_for(collect(), self.limits.body_timeout)
        except asyncio.TimeoutError:
            raise BadRequest(f"the request body took over {self.limits.body_timeout:g} s to arrive", status=408,
                             headers=close) from None
        return b"".join(chunks)

    async def _generate(self, request: GenRequest, http: Any = None) -> GenResult:
        """Queue the request and wait for its result, up to the request time limit; a client
        that hangs up (``http`` disconnected) abandons its job, so its compute is not spent."""
        if self.engine is None:
            raise BadRequest("the server is not running", status=503)
        job = self.engine.submit(request)
        waiting = asyncio.ensure_future(asyncio.wrap_future(job.future))
        try:
            while True:
                left = job.deadline - time.monotonic()
                if left <= 0:
                    raise asyncio.TimeoutError
                done, _ = await asyncio.wait({waiting}, timeout=min(left, 0.5))
                if done:
                    return waiting.result()
                if http is not None and await http.is_disconnected():
                    raise BadRequest("the client went away", status=499)
        except (asyncio.TimeoutError, _Abandoned):
            raise BadRequest(f"no answer within the request time limit of {self.limits.request_timeout:g} s "
                             "(--request-timeout)", status=504) from None
        except BadRequest:
            raise
        except Exception as e:  # noqa: BLE001 - the backend's failure, reported
            raise BadRequest(f"generation failed: {type(e).__name__}: {e}", status=500) from None
        finally:
            if not waiting.done():
                job.abandoned = True
                waiting.cancel()  # cancels the job too while it still waits in the queue

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"

    def _start_engine(self) -> None:
        if self.engine is None:
            self.engine = Engine(self.generator, self.limits)

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C (uvicorn handles the signal and shuts down)."""
        self._start_engine()
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self._close()

    def start(self, wait: float = 10.0) -> "OpenAIServer":
        self._start_engine()
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="selfalign-serve-http")
        self.thread.start()
        end = time.monotonic() + wait
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self._close()

    def _close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self.sock.close()

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ----------------------------------------------------------------------------- responses
def _response(res: GenResult, parsed: ParsedRequest, model: str, rid: str) -> dict[str, Any]:
    choices = []
    for c in res.completions:
        choice: dict[str, Any] = {"index": c.index, "finish_reason": c.finish_reason}
        if parsed.chat:
            choice["message"] = {"role": "assistant", "content": c.text}
            if c.token_logprobs is not None:
                choice["logprobs"] = {"content": [{"token": "", "logprob": x} for x in c.token_logprobs]}
        else:
            choice["text"] = c.text
            choice["logprobs"] = {"token_logprobs": list(c.token_logprobs)} if c.token_logprobs is not None else None
        choices.append(choice)
    return {"id": rid, "object": "chat.completion" if parsed.chat else "text_completion", "created": int(time.time()),
            "model": model, "choices": choices, "usage": _usage(res)}


def _usage(res: GenResult) -> dict[str, int]:
    n_tok = sum(c.n_tokens for c in res.completions)
    return {"prompt_tokens": res.prompt_tokens, "completion_tokens": n_tok, "total_tokens": res.prompt_tokens + n_tok}


async def _events(res: GenResult, parsed: ParsedRequest, model: str, rid: str) -> AsyncIterator[bytes]:
    """Server-sent events: per choice one content chunk and one finish chunk, then [DONE]."""
    base = {"id": rid, "created": int(time.time()), "model": model,
            "object": "chat.completion.chunk" if parsed.chat else "text_completion"}
    for c in res.completions:
        first: dict[str, Any] = {"index": c.index, "finish_reason": None}
        last: dict[str, Any] = {"index": c.index, "finish_reason": c.finish_reason}
        if parsed.chat:
            first["delta"] = {"role": "assistant", "content": c.text}
            last["delta"] = {}
        else:
            first["text"], last["text"] = c.text, ""
        for choice in (first, last):
            yield f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()
    if parsed.include_usage:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': _usage(res)})}\n\n".encode()
    yield b"data: [DONE]\n\n"

