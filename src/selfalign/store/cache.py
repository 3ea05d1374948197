"""One content-addressed store for every model call: cache, audit log and resume at once.

A sample's key is the sha256 of (model id + revision, prompt, the semantic generation
parameters, seed, sample index). ``CachedModel`` wraps any backend: it looks every sample up,
sends only the missing ones to the backend in chunks, and commits each chunk as soon as it is
back. Kill a run anywhere, re-run it, and only the missing samples are generated; because each
sample has its own seed and a re-run call sends the backend the batches the uninterrupted call
sent (chunks are cut from all of a call's samples, see :class:`CachedModel`), the result equals an
uninterrupted run.

SQLite in WAL mode with a busy timeout, ``INSERT OR IGNORE`` and a read-back after each write:
two processes may write at once, and both then return the first stored answer.
Schema changes are named migrations, applied once each, in order.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from selfalign import logs
from selfalign.models.base import ProgressFn
from selfalign.types import (
    Completion,
    GenRequest,
    GenResult,
    ScoreRequest,
    ScoreResult,
    prompt_to_json,
    stable_hash,
)

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_generations",
        """
        CREATE TABLE generations (
            key TEXT PRIMARY KEY,
            model_id TEXT NOT NULL,
            request TEXT NOT NULL,
            completion TEXT NOT NULL,
            n_tokens INTEGER NOT NULL,
            latency_s REAL NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX generations_model ON generations(model_id);
        """,
    ),
    (
        "0002_scores",
        """
        CREATE TABLE scores (
            key TEXT PRIMARY KEY,
            model_id TEXT NOT NULL,
            request TEXT NOT NULL,
            token_logprobs TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        """,
    ),
    (
        "0003_calls",
        """
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            model_id TEXT NOT NULL,
            n_items INTEGER NOT NULL,
            n_cached INTEGER NOT NULL,
            n_tokens INTEGER NOT NULL,
            seconds REAL NOT NULL,
            created_at REAL NOT NULL
        );
        """,
    ),
]


def default_store_path() -> Path:
    env = os.environ.get("SELFALIGN_STORE")
    if env:
        return Path(env).expanduser()
    from selfalign.models.embedded import cache_root

    return cache_root() / "store.sqlite"


#: the columns each table must have (checked when a store opens, and by ``selfalign store check``)
SCHEMA: dict[str, tuple[str, ...]] = {
    "generations": ("key", "model_id", "request", "completion", "n_tokens", "latency_s", "created_at"),
    "scores": ("key", "model_id", "request", "token_logprobs", "created_at"),
    "calls": ("id", "kind", "model_id", "n_items", "n_cached", "n_tokens", "seconds", "created_at"),
}

log = logging.getLogger("selfalign.store")


class StoreError(ValueError):
    """The store file cannot be used (not a database, corrupt, wrong schema): the message names the
    file and the commands that check and repair it."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem = " ".join(problem.split())
        super().__init__(f"store {path}: {problem}; see `selfalign store check {path}`, then "
                         f"`selfalign store repair {path}` (keeps a backup) or delete the file")


class Store:
    """``check`` (default): before anything else uses it, the file passes SQLite's ``quick_check``
    and has the expected tables; otherwise :class:`StoreError`, one line naming the file."""

    def __init__(self, path: str | Path | None = None, check: bool = True):
        self.path = Path(path) if path else default_store_path()
        if self.path.is_dir():
            raise StoreError(self.path, "is a directory, not a store file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        #: keys of rows whose stored JSON did not decode: treated as missing and overwritten when regenerated
        self.bad_keys: set[str] = set()
        #: what this process asked through this store object, per call kind ("generate", "score"):
        #: calls, items, store hits and misses, new tokens (generated, or scored), seconds; a run's
        #: provenance reports it (store/runs.py)
        self.tally: dict[str, dict[str, Any]] = {}
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(self.path, f"cannot open ({e})") from None
        try:
            self.db.execute("PRAGMA busy_timeout=60000")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if check:
                res = self.db.execute("PRAGMA quick_check(1)").fetchone()
                if not res or res[0] != "ok":
                    raise StoreError(self.path, f"damaged (quick_check: {res[0] if res else 'no answer'})")
            self._migrate()
            if check:
                problem = schema_problem(self.db)
                if problem:
                    raise StoreError(self.path, problem)
        except sqlite3.OperationalError as e:
            self.db.close()
            if "locked" in str(e) or "busy" in str(e):
                raise  # another process holds it: not damage
            raise StoreError(self.path, f"cannot be used ({e})") from None
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise StoreError(self.path, f"damaged or not a store ({e})") from None
        except StoreError:
            self.db.close()
            raise

    def _migrate(self) -> None:
        self.db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        for name, sql in MIGRATIONS:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                done = self.db.execute("SELECT 1 FROM migrations WHERE name=?", (name,)).fetchone()
                if not done:
                    for stmt in filter(str.strip, sql.split(";")):
                        self.db.execute(stmt)
                    self.db.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM migrations ORDER BY name")]

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ access
    def _get(self, table: str, col: str, keys: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            part = list(keys[i:i + 500])
            q = f"SELECT key, {col} FROM {table} WHERE key IN ({','.join('?' * len(part))})"
            out.update(self.db.execute(q, part).fetchall())
        return out

    def _bad_row(self, table: str, key: str, e: Exception) -> None:
        if key not in self.bad_keys:
            log.warning("store %s: the %s row %s does not decode (%s): treated as missing, regenerated "
                        "(`selfalign store check %s` lists every such row)", self.path, table, key, e, self.path)
        self.bad_keys.add(key)

    def get_completions(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The stored completions of ``keys`` (those that exist). A row whose JSON does not decode
        is logged by its key and left out, so the caller regenerates it."""
        out = {}
        for k, v in self._get("generations", "completion", keys).items():
            try:
                out[k] = Completion.from_dict(json.loads(v), cached=True)
            except (ValueError, KeyError, TypeError) as e:
                self._bad_row("generations", k, e)
        return out

    def _drop_bad(self, table: str, keys: Sequence[str]) -> None:
        bad = [k for k in keys if k in self.bad_keys]
        if bad:
            self.db.executemany(f"DELETE FROM {table} WHERE key=?", [(k,) for k in bad])
            self.bad_keys.difference_update(bad)

    def put_completions(self, rows: list[tuple[str, str, dict, Completion, float]]) -> None:
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._drop_bad("generations", [r[0] for r in rows])
            self.db.executemany(
                "INSERT OR IGNORE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(k, m, json.dumps(req, ensure_ascii=False), json.dumps(c.to_dict(), ensure_ascii=False),
                  c.n_tokens, lat, now) for k, m, req, c, lat in rows],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def get_scores(self, keys: Sequence[str]) -> dict[str, tuple[float, ...]]:
        out = {}
        for k, v in self._get("scores", "token_logprobs", keys).items():
            try:
                lp = json.loads(v)
                if not isinstance(lp, list):
                    raise TypeError(f"expected a list, got {type(lp).__name__}")
                out[k] = tuple(float(x) for x in lp)
            except (ValueError, TypeError) as e:
                self._bad_row("scores", k, e)
        return out

    def put_scores(self, rows: list[tuple[str, str, dict, tuple[float, ...]]]) -> None:
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._drop_bad("scores", [r[0] for r in rows])
            self.db.executemany(
                "INSERT OR IGNORE INTO scores VALUES (?, ?, ?, ?, ?)",
                [(k, m, json.dumps(req, ensure_ascii=False), json.dumps(list(lp)), now) for k, m, req, lp in rows],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def log_call(self, kind: str, model_id: str, n_items: int, n_cached: int, n_tokens: int, seconds: float) -> None:
        t = self.tally.setdefault(kind, {"calls": 0, "items": 0, "hits": 0, "misses": 0, "tokens": 0, "seconds": 0.0})
        t["calls"] += 1
        t["items"] += n_items
        t["hits"] += n_cached
        t["misses"] += n_items - n_cached
        t["tokens"] += n_tokens
        t["seconds"] += seconds
        self.db.execute(
            "INSERT INTO calls (kind, model_id, n_items, n_cached, n_tokens, seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, model_id, n_items, n_cached, n_tokens, seconds, time.time()),
        )

    def stats(self) -> dict[str, Any]:
        gens = self.db.execute("SELECT model_id, COUNT(*), SUM(n_tokens) FROM generations GROUP BY model_id").fetchall()
        return {"path": str(self.path), "generations": {m: {"samples": n, "tokens": t} for m, n, t in gens},
                "scores": self.db.execute("SELECT COUNT(*) FROM scores").fetchone()[0],
                "calls": self.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]}


def schema_problem(db: sqlite3.Connection) -> str | None:
    """What is wrong with the tables of an open store (a missing table or column), or None."""
    for table, cols in SCHEMA.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if not have:
            return f"no table '{table}' (not a selfalign store?)"
        missing = [c for c in cols if c not in have]
        if missing:
            return f"table '{table}' lacks the column(s) {', '.join(missing)}"
    return None


def request_json(req: GenRequest) -> dict[str, Any]:
    params = asdict(req.params)
    params["stop"] = list(params["stop"])
    return {"prompt": prompt_to_json(req.prompt), "params": params, "seed": req.seed}


def sample_key(model_id: str, req: GenRequest, index: int, sampler: str | None = None) -> str:
    """The store key of sample ``index`` of ``req``. ``sampler`` names the backend's way of drawing
    from the distribution (its random stream): a sampled completion drawn another way is not
    reused under the same seed; greedy answers do not depend on it."""
    key = {"model": model_id, **request_json(req), "index": index}
    if sampler and not req.params.greedy:
        key["sampler"] = sampler
    return stable_hash(key)


def score_key(model_id: str, req: ScoreRequest) -> str:
    return stable_hash({"model": model_id, "prompt": prompt_to_json(req.prompt), "completion": req.completion})


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class CachedModel:
    """Wraps a backend with the store. Same protocols as the backend.

    ``chunk_size`` samples are sent to the backend at a time and committed when they return,
    so an interruption loses at most one chunk.

    **Exact resume.** A call's chunks are cut from *all* its samples, in an order that depends only
    on the requests, never on which samples are still missing; each chunk then sends the backend
    only its own missing samples. A killed call has committed whole chunks, so the same call made
    again on the same store skips them and sends every other chunk exactly the batch it got in the
    uninterrupted run. That matters because a backend's batch can change its numbers in the last
    bit (a matrix product's kernel depends on how many rows it multiplies, ``bench/resume.py``),
    which at bf16 or at temperature 1 can change tokens. (Before issue 26 the order came from the
    missing samples: once a prompt's first request was done, its other requests moved, and a
    resumed call's batches were others.) Not promised: the same requests split by the *caller*
    into other calls, or asked after another call stored some of them, may be batched differently.
    """

    def __init__(self, backend: Any, store: Store | None = None, chunk_size: int | None = None, progress: bool = True,
                 description: str = "generating"):
        self.backend = backend
        self.store = store or Store()
        self.model_id = backend.model_id
        self.sampler: str | None = getattr(backend, "sampler", None)
        self.can_score = bool(getattr(backend, "can_score", False))
        self.can_train = bool(getattr(backend, "can_train", False))
        self.train_path: str | None = getattr(backend, "train_path", None)
        # a chunk is one backend call, committed when it returns: the backend's batch (more rows per
        # forward pass is faster on a CPU too), 64 for backends without one
        self.chunk_size = chunk_size or int(getattr(backend, "batch_size", 0) or 64)
        self.show_progress = progress
        self.description = description

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 description: str | None = None) -> list[GenResult]:
        t0 = time.time()
        units = [(ri, s, self._key(r, s)) for ri, r in enumerate(requests) for s in r.sample_indices()]
        found = self.store.get_completions([k for _, _, k in units])
        # prompts of similar length in the same chunk: less padding in the backend's batches; the
        # requests for one prompt (greedy and sampled, say) next to each other, after its first
        # request, so the backend prefills that prompt once for all of them. Order and chunks come
        # from all the call's samples, the missing ones are picked after (exact resume: see above)
        pj = [json.dumps(prompt_to_json(r.prompt)) for r in requests]
        first: dict[str, int] = {}
        for ri, text in enumerate(pj):
            first.setdefault(text, ri)
        units.sort(key=lambda u: (len(pj[u[0]]), first[pj[u[0]]], u[0], u[1]))
        chunks = [[u for u in c if u[2] not in found] for c in _chunks(units, self.chunk_size)]
        missing = [u for c in chunks for u in c]
        new_tokens = 0
        with _progress(self.show_progress, description or self.description, len(units), len(units) - len(missing)) as bar:
            for chunk in (c for c in chunks if c):
                by_req: dict[int, list[int]] = {}
                for ri, s, _ in chunk:
                    by_req.setdefault(ri, []).append(s)
                sub = [GenRequest(requests[ri].prompt, requests[ri].params, requests[ri].n, requests[ri].seed, tuple(ss))
                       for ri, ss in by_req.items()]
                c0 = time.time()

                def tick(n_samples: int, n_tokens: int) -> None:
                    bar(n_samples, n_tokens)
                    if progress:
                        progress(n_samples, n_tokens)

                results = self.backend.generate(sub, progress=tick)
                latency = (time.time() - c0) / max(1, len(chunk))
                rows = []
                for ri, res in zip(by_req, results):
                    for c in res.completions:
                        rows.append((self._key(requests[ri], c.index), self.model_id,
                                     {**request_json(requests[ri]), "index": c.index}, c, latency))
                        new_tokens += c.n_tokens
                self.store.put_completions(rows)
                # read back: if another process stored a sample first, everyone returns that one
                found.update(self.store.get_completions([r[0] for r in rows]))
                for stored in rows:
                    found[stored[0]] = Completion.from_dict(found[stored[0]].to_dict(), cached=False)
        self.store.log_call("generate", self.model_id, len(units), len(units) - len(missing), new_tokens, time.time() - t0)
        out = []
        for ri, r in enumerate(requests):
            comps = tuple(found[self._key(r, s)] for s in r.sample_indices())
            out.append(GenResult(r, comps))
        return out

    def _key(self, req: GenRequest, index: int) -> str:
        return sample_key(self.model_id, req, index, self.sampler)

    def sibling(self, spec: str | Path, **options: Any) -> "CachedModel":
        """Another model (a spec, or a directory a stage has just trained), built by the registry
        and wrapped in this model's store, with the same progress setting; served the way this one
        is where the backend says how (a ``ray:`` pool: the sibling on as many workers)."""
        from selfalign.models.registry import load_model

        wrap = getattr(self.backend, "wrap_spec", None)
        spec = wrap(str(spec)) if callable(wrap) else str(spec)
        return CachedModel(load_model(spec, **options), self.store, self.chunk_size, self.show_progress)

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if not self.can_score:
            from selfalign.models.base import CannotScore

            raise CannotScore(self.model_id)
        t0 = time.time()
        keys = [score_key(self.model_id, r) for r in requests]
        found = self.store.get_scores(keys)
        # chunks cut from all the requests, as in generate: a re-run scores the same batches; a request
        # asked twice is scored once (Best-of-N's repeated short answers)
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        chunks = [[i for i in c if keys[i] not in found and first[keys[i]] == i]
                  for c in _chunks(list(range(len(requests))), self.chunk_size)]
        missing = [i for c in chunks for i in c]
        for chunk in (c for c in chunks if c):
            res = self.backend.score([requests[i] for i in chunk])
            rows = [(keys[i], self.model_id, {"prompt": prompt_to_json(requests[i].prompt),
                                              "completion": requests[i].completion}, r.token_logprobs)
                    for i, r in zip(chunk, res)]
            self.store.put_scores(rows)
            found.update(self.store.get_scores([r[0] for r in rows]))
        scored = sum(len(found[keys[i]]) for i in missing)  # tokens newly scored (log-probs computed)
        self.store.log_call("score", self.model_id, len(requests), len(requests) - len(missing), scored, time.time() - t0)
        return [ScoreResult(r, found[k]) for r, k in zip(requests, keys)]


class _progress:
    """Progress of one generate call: a rich bar with samples and new tokens/s on a terminal; when
    stderr is not one (``nohup``, CI, a log file), a plain line every 10% or 30 s with the rate and
    the time left, so a long run shows it is alive in its log too. A no-op when disabled."""

    EVERY_S = 30.0

    def __init__(self, enabled: bool, description: str, total: int, done: int, stream: Any = None):
        import sys

        self.enabled = enabled and total > 0 and done < total and logs.verbosity() >= 1
        self.description, self.total, self.done = description, total, done
        self.tokens = 0
        self.t0 = time.time()
        self.stream = stream or sys.stderr
        self.lines = not self.stream.isatty()

    def __enter__(self) -> Callable[[int, int], None]:
        if not self.enabled:
            return lambda n, t: None
        if self.lines:
            return self._line_tick()
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False)
        self.bar.start()
        cached = f" ({self.done} cached)" if self.done else ""
        self.task = self.bar.add_task(self.description + cached, total=self.total, completed=self.done, rate="")

        def tick(n: int, t: int) -> None:
            self.tokens += t
            rate = self.tokens / max(1e-6, time.time() - self.t0)
            self.bar.update(self.task, advance=n, rate=f"{rate:.0f} tok/s")

        return tick

    def _line_tick(self) -> Callable[[int, int], None]:
        start = self.done
        state = {"last_t": self.t0, "last_decile": 10 * start // self.total}
        cached = f", {start} from the store" if start else ""
        self._say(f"{self.description}: {start}/{self.total}{cached}")

        def tick(n: int, t: int) -> None:
            self.done += n
            self.tokens += t
            now = time.time()
            decile = 10 * self.done // self.total
            if decile > state["last_decile"] or now - state["last_t"] >= self.EVERY_S or self.done >= self.total:
                state["last_t"], state["last_decile"] = now, decile
                self._say(self.status(now, start))

        return tick

    def status(self, now: float, start: int) -> str:
        """``desc: done/total (pct%), rate tok/s, samples/s, ETA``; the rate over this call's new samples."""
        el = max(1e-6, now - self.t0)
        new = self.done - start
        per_s = new / el
        eta = (self.total - self.done) / per_s if per_s > 0 else float("nan")
        eta_s = "done" if self.done >= self.total else (f"ETA {_clock(eta)}" if eta == eta else "ETA ?")
        return (f"{self.description}: {self.done}/{self.total} ({100 * self.done // self.total}%), "
                f"{self.tokens / el:.0f} tok/s, {per_s:.1f} samples/s, {_clock(el)} elapsed, {eta_s}")

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        if self.enabled and not self.lines:
            self.bar.stop()


def _clock(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss``.

    >>> _clock(75), _clock(3725)
    ('1:15', '1:02:05')
    """
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
