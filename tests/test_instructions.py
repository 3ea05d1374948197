"""The instruction-following check: every constraint kind, exact; bad files name the line and field."""

from __future__ import annotations

import json

import pytest

from selfalign.data.io import DataError
from selfalign.judges.instructions import CHECKS, Constraint, InstructionItem, load_instructions

CASES = [  # kind, value, a response that meets it, one that does not
    ("lowercase", None, "all quiet here.", "All quiet here."),
    ("uppercase", None, "WATCH OUT!", "Watch out!"),
    ("max_words", 3, "Jupiter is big", "Jupiter is very big"),
    ("min_words", 4, "one two three four", "one two three"),
    ("keyword", "leaves", "The Leaves fall.", "The trees are bare."),
    ("forbidden", "blue", "The sea is wide.", "The sea is Blue."),
    ("starts_with", "Yes", "Yes, it is.", "No, it is not. Yes."),
    ("ends_with", "Thank you", "Teachers help. Thank you.", "Thank you, teachers help."),
    ("bullets", 2, "- a\n- b", "- a\n- b\n- c"),
    ("numbered", 2, "1. a\n2. b", "1. a"),
    ("no_commas", None, "Plain words only.", "Words, with commas."),
    ("quoted", None, '"Patience wins."', "Patience wins."),
    ("json", None, '```json\n{"name": "banana"}\n```', "name: banana"),
]


def test_every_kind_is_covered_here():
    assert {c[0] for c in CASES} == set(CHECKS)


@pytest.mark.parametrize("kind,value,good,bad", CASES)
def test_each_constraint_tells_meeting_from_missing(kind, value, good, bad):
    c = Constraint(kind, value)
    assert c.met(good) and not c.met(bad)
    assert not c.met("")  # an empty reply follows no instruction


def test_an_item_needs_every_constraint():
    it = InstructionItem("x", "p", (Constraint("lowercase"), Constraint("keyword", "snow")))
    assert it.followed("fresh snow") and not it.followed("Fresh snow") and not it.followed("fresh rain")


def test_the_bundled_items_load_and_each_can_be_followed():
    items = load_instructions()
    assert len(items) == 40 and len({it.id for it in items}) == 40
    assert all(it.constraints for it in items)


@pytest.mark.parametrize("row,msg", [
    ({"id": "a", "prompt": "p"}, "field 'constraints' is missing"),
    ({"id": "a", "prompt": "p", "constraints": [{"kind": "rhymes"}]}, "unknown constraint kind 'rhymes'"),
    ({"id": "a", "prompt": "p", "constraints": [{"kind": "max_words", "value": "3"}]}, "needs a positive integer"),
    ({"id": "a", "prompt": "p", "constraints": [{"kind": "keyword"}]}, "needs a non-empty string"),
])
def test_bad_rows_name_the_file_line_and_field(tmp_path, row, msg):
    p = tmp_path / "if.jsonl"
    p.write_text(json.dumps({"id": "ok", "prompt": "p", "constraints": [{"kind": "lowercase"}]}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=f"{p}:2: .*{msg}"):
        load_instructions(p)
