"""Scale-out: one model on N Ray actors gives what one worker gives, and stores from several
machines merge exactly."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from selfalign.cli import app
from selfalign.models.base import ModelError
from selfalign.models.ray_pool import parse, split_samples
from selfalign.models.registry import check_spec, load_model, trainable_path
from selfalign.store.cache import CachedModel, Store
from selfalign.store.cli import merge_stores
from selfalign.types import Completion, GenParams, GenRequest, ScoreRequest


def _requests() -> list[GenRequest]:
    sampled = [GenRequest(f"Question number {i}?" + " more" * (i % 4), GenParams(temperature=1.0, max_tokens=6), n=3,
                          seed=i) for i in range(9)]
    greedy = [GenRequest([{"role": "user", "content": f"Say {i}"}], GenParams(max_tokens=5)) for i in range(5)]
    return sampled + greedy


def test_ray_specs_are_checked_without_loading(tiny_model_dir):
    assert parse("ray:3:smollm2-135m+fp32") == (3, "smollm2-135m+fp32")
    check_spec(f"ray:2:hf:{tiny_model_dir}+fp32")
    assert trainable_path(f"ray:2:{tiny_model_dir}") == str(tiny_model_dir)
    for bad in ("ray:0:smollm2-135m", "ray:two:smollm2-135m", "ray:2:", "ray:2:ray:2:smollm2-135m", "ray:2:nope:x"):
        with pytest.raises(ModelError):
            check_spec(bad)


def test_split_samples_cuts_requests_into_batches_of_samples():
    reqs = [GenRequest("p", GenParams(), n, i) for i, n in enumerate((4, 1, 1, 1, 1, 4))]
    pieces = split_samples(reqs, 6)
    assert [sum(len(r.sample_indices()) for _, r in p) for p in pieces] == [6, 6]
    assert [(k, r.sample_indices()) for k, r in pieces[1]] == [(3, (0,)), (4, (0,)), (5, (0, 1, 2, 3))]
    cut = split_samples(reqs[:1], 3)  # one request over two pieces: indices 0-2, then 3, same seed
    assert [[r.sample_indices() for _, r in p] for p in cut] == [[(0, 1, 2)], [(3,)]]
    assert all(r.seed == 0 and r.n == 4 for p in cut for _, r in p)
    assert split_samples([], 4) == []


def test_two_ray_workers_give_what_one_worker_gives(tiny_model_dir, tmp_path):
    """Samples, greedy answers and scores from a pool of 2 actors equal the in-process model's,
    under the same model id, written once into the parent's store; a trained sibling is served
    by as many workers."""
    ray = pytest.importorskip("ray")
    spec = f"hf:{tiny_model_dir}+fp32"  # explicit: the actors do not see the tests' fp32 patch
    reqs = _requests()
    local = CachedModel(load_model(spec, batch_size=8), Store(tmp_path / "one.sqlite"), progress=False)
    want = local.generate(reqs)
    try:
        pool_store = Store(tmp_path / "pool.sqlite")
        pool = CachedModel(load_model(f"ray:2:{spec}", batch_size=8), pool_store, progress=False)
        assert pool.model_id == local.model_id and pool.chunk_size == 16
        got = pool.generate(reqs)
        assert [[c.text for c in r.completions] for r in got] == [[c.text for c in r.completions] for r in want]
        n_rows = pool_store.db.execute("SELECT count(*) FROM generations").fetchone()[0]
        assert n_rows == sum(len(r.sample_indices()) for r in reqs)
        again = pool.generate(reqs)  # everything from the store now
        assert all(c.cached for r in again for c in r.completions)
        sreqs = [ScoreRequest(f"Question {i}", " an answer") for i in range(5)]
        assert [x for r in pool.score(sreqs) for x in r.token_logprobs] == pytest.approx(
            [x for r in local.score(sreqs) for x in r.token_logprobs], abs=1e-6)
        sib = pool.sibling(str(tiny_model_dir))
        assert type(sib.backend).__name__ == "RayPool" and len(sib.backend.workers) == 2
    finally:
        ray.shutdown()


def _store_with(path, rows):
    s = Store(path)
    s.put_completions([(k, "m", {"prompt": k}, Completion(text, "stop", 1), 0.1) for k, text in rows])
    s.close()
    return path


def test_merging_stores_is_exact_and_idempotent(tmp_path):
    a = _store_with(tmp_path / "a.sqlite", [("k1", "one"), ("k2", "two")])
    b = _store_with(tmp_path / "b.sqlite", [("k2", "two"), ("k3", "three"), ("k1", "ONE")])
    counts = merge_stores(a, [b])
    assert counts["generations"] == {"added": 1, "present": 1, "conflicts": 1, "skipped": 0}
    db = sqlite3.connect(a)
    got = {k: json.loads(c)["text"] for k, c in db.execute("SELECT key, completion FROM generations")}
    assert got == {"k1": "one", "k2": "two", "k3": "three"}  # our k1 kept
    assert merge_stores(a, [b])["generations"]["added"] == 0  # a second merge adds nothing
    with pytest.raises(Exception, match="into itself"):
        merge_stores(a, [a])
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    c = _store_with(tmp_path / "c.sqlite", [("k9", "nine")])
    with pytest.raises(Exception, match="not a sound store"):
        merge_stores(a, [c, junk])  # found before anything is written: c's row is not added either
    assert "k9" not in {k for (k,) in sqlite3.connect(a).execute("SELECT key FROM generations")}


def test_store_merge_command(tmp_path):
    a = _store_with(tmp_path / "a.sqlite", [("k1", "one")])
    b = _store_with(tmp_path / "b.sqlite", [("k2", "two")])
    r = CliRunner().invoke(app, ["store", "merge", str(b), "--into", str(a)])
    assert r.exit_code == 0, r.output
    assert "generations: 1 added, 0 already there" in r.output
    r = CliRunner().invoke(app, ["store", "merge", str(tmp_path / "missing.sqlite"), "--into", str(a)])
    assert r.exit_code != 0 and "no such file" in str(r.exception)
