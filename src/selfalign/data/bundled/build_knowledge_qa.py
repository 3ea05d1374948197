"""Rebuild ``knowledge_qa.jsonl``: the bundled knowledge-boundary QA set.

Written by this project from facts that PyPI packages ship (``countryinfo`` for countries,
capitals, currencies, demonyms and regions; ``pycountry`` for currency names; ``periodictable``
for elements). Questions span relations a small model knows to very different degrees, so that
there is a knowledge boundary to align against. Split train/test **by entity** (a country or an
element): every question about one entity lands in the same split, so the test set asks about
things the model never saw in training.

    pip install 'selfalign[data]'
    python -m selfalign.data.bundled.build_knowledge_qa

Rows: ``id``, ``question``, ``answers`` (gold first, then aliases), ``relation``, ``entity``,
``split``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

OUT = Path(__file__).with_name("knowledge_qa.jsonl")
TEST_FRACTION = 0.3

NUMBER_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """A number in English words, tens hyphenated (the build of the OOD sets uses it too).

    >>> number_words(56), number_words(144)
    ('fifty-six', 'one hundred forty-four')"""
    if n < 20:
        return NUMBER_WORDS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + NUMBER_WORDS[n % 10])
    rest = n % 100
    return NUMBER_WORDS[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


def split_of(entity: str) -> str:
    h = int(hashlib.sha256(entity.lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < TEST_FRACTION else "train"


def _clean(names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        n = n.strip()
        if n and n not in out and not re.fullmatch(r"[A-Z]{2,3}", n):  # drop bare ISO codes
            out.append(n)
    return out


def country_rows() -> list[dict]:
    import pycountry
    from countryinfo import all_countries

    rows = []
    for c in all_countries():
        info = c.info()
        name = info.get("name")
        if not name:
            continue
        names = _clean([name] + list(info.get("altSpellings") or []))
        capitals = info.get("capital") or []
        capitals = _clean([capitals] if isinstance(capitals, str) else list(capitals))
        if capitals:
            rows.append(dict(question=f"What is the capital of {name}?", answers=capitals, relation="capital", entity=name))
            rows.append(dict(question=f"{capitals[0]} is the capital of which country?", answers=names,
                             relation="country_of_capital", entity=name))
        cur = []
        for code in info.get("currencies") or []:
            obj = pycountry.currencies.get(alpha_3=code)
            if obj is not None:
                cur.append(obj.name)
        if cur:
            rows.append(dict(question=f"What is the currency of {name}?", answers=_clean(cur) + list(info.get("currencies")),
                             relation="currency", entity=name))
        demonym = info.get("demonym") or ""
        demonym = (demonym if isinstance(demonym, str) else (demonym[0] if demonym else "")).strip()
        if demonym:
            rows.append(dict(question=f"What do you call a person from {name}?", answers=[demonym],
                             relation="demonym", entity=name))
        region, sub = str(info.get("region") or "").strip(), str(info.get("subregion") or "").strip()
        if region:
            answers = [region] + ([sub] if sub and sub != region else [])
            if region == "Americas":  # North, South, Central, Latin America all count
                answers.append("America")
            rows.append(dict(question=f"On which continent is {name}?", answers=answers, relation="continent", entity=name))
    return rows


def element_rows() -> list[dict]:
    import periodictable

    rows = []
    for el in periodictable.elements:
        if el.number < 1:
            continue
        name = el.name.capitalize()
        names = [name] + (["Aluminium"] if name == "Aluminum" else []) + (["Sulphur"] if name == "Sulfur" else [])
        num = str(el.number)
        rows += [
            dict(question=f"What is the chemical symbol of {name}?", answers=[el.symbol], relation="element_symbol", entity=name),
            dict(question=f"Which chemical element has the symbol {el.symbol}?", answers=names, relation="symbol_element", entity=name),
            dict(question=f"What is the atomic number of {name}?", answers=[num, number_words(el.number)], relation="atomic_number", entity=name),
            dict(question=f"Which chemical element has atomic number {num}?", answers=names, relation="number_element", entity=name),
        ]
    return rows


def build() -> list[dict]:
    rows = country_rows() + element_rows()
    seen = set()
    out = []
    for r in rows:
        if r["question"] in seen:
            continue
        seen.add(r["question"])
        r["split"] = split_of(r["entity"])
        r["id"] = f"{r['relation']}:{r['entity']}".lower().replace(" ", "_")
        out.append({k: r[k] for k in ("id", "question", "answers", "relation", "entity", "split")})
    return out


def main() -> None:
    rows = build()
    with OUT.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    n_test = sum(r["split"] == "test" for r in rows)
    print(f"wrote {len(rows)} questions ({len(rows) - n_test} train, {n_test} test) to {OUT}")


if __name__ == "__main__":
    main()
