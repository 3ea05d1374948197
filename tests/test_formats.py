import json

import pytest

from conftest import FIXTURES
from selfalign.data.formats import bundled_path, load_qa
from selfalign.data.io import DataError


def test_triviaqa_original_and_hf_export_agree():
    a = load_qa(FIXTURES / "triviaqa_original.json")
    b = load_qa(FIXTURES / "triviaqa_hf.jsonl")
    assert [x.question for x in a] == [x.question for x in b]
    assert a[0].answers[0] == "Paris" and "Paree" in a[0].answers and "paree" in b[0].answers
    assert a[1].id == "tc_2"


def test_paper_formats():
    assert load_qa(FIXTURES / "nonambigqa.jsonl")[0].answers == ("Leonardo da Vinci",)
    pu = load_qa(FIXTURES / "puqa.jsonl")[0]
    assert pu.answers == () and not pu.answerable and pu.meta["authors"]
    assert load_qa(FIXTURES / "pkqa.jsonl")[0].answers == ("Ludwig van Beethoven",)
    m = load_qa(FIXTURES / "mmlu.jsonl")
    assert m[0].answers == ("4",) and "B. 4" in m[0].question and m[1].meta["letter"] == "C"


def test_real_samples_load(shared_data):
    for name, fmt in [("nonambigqa", "nonambigqa"), ("puqa", "puqa"), ("pkqa", "pkqa")]:
        items = load_qa(shared_data / "samples" / f"{name}.sample.jsonl")
        assert len(items) == 10 and all(i.question for i in items)
        assert load_qa(shared_data / "samples" / f"{name}.sample.jsonl", fmt) == items


def test_wrong_format_names_file_line_and_field(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"question": "q", "answers": ["a"]}\n\n{"question": "q2"}\n')
    with pytest.raises(DataError, match=r"t.jsonl:3: missing field 'answer'"):
        load_qa(p, "qa")
    p.write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n')
    with pytest.raises(DataError, match=r"t.jsonl:1: field 'choices' should have 4 entries"):
        load_qa(p)
    p.write_text('{"foo": 1}\n')
    with pytest.raises(DataError, match="cannot tell the format"):
        load_qa(p)


def test_bundled_set_is_large_split_by_entity_and_has_aliases():
    rows = [json.loads(line) for line in bundled_path().read_text().splitlines()]
    assert len(rows) >= 1500
    assert len({r["relation"] for r in rows}) >= 5
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["entity"], r["split"]) == r["split"]  # one entity, one split
    assert {r["split"] for r in rows} == {"train", "test"}
    assert any(len(r["answers"]) > 1 for r in rows)
    assert len(load_qa("bundled", split="test")) == sum(r["split"] == "test" for r in rows)
