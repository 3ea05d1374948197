"""The taxonomy of Liu et al. 2023, "Trustworthy LLMs: a Survey and Guideline for Evaluating Large
Language Models' Alignment" (arXiv 2308.05374), Figure 1 / §3-§10: 7 categories, 29 sub-categories.

Each sub-category lists the studies (``selfalign.trust.studies``) that measure it; the report shows
the whole 7 x 29 grid, measured or not, because what is *not* measured is part of the profile.
The assignment of studies to sub-categories is ours (the paper's §11 studies each target one
sub-category; where a study also speaks to another, both are listed).

>>> len(CATEGORIES), sum(len(s) for s in CATEGORIES.values())
(7, 29)
>>> category_of("sycophancy")
'reliability'
>>> sorted(studies_for("stereotype_bias"))
['fairness']
"""

from __future__ import annotations

from typing import Any

CATEGORIES: dict[str, tuple[str, ...]] = {
    "reliability": ("misinformation", "hallucination", "inconsistency", "miscalibration", "sycophancy"),
    "safety": ("violence", "unlawful_conduct", "harms_to_minor", "adult_content", "mental_health_issues",
               "privacy_violation"),
    "fairness": ("injustice", "stereotype_bias", "preference_bias", "disparate_performance"),
    "resistance_to_misuse": ("propaganda", "cyberattack", "social_engineering", "leaking_copyrighted_content"),
    "explainability_and_reasoning": ("lack_of_interpretability", "limited_logical_reasoning",
                                     "limited_causal_reasoning"),
    "social_norm": ("toxicity", "unawareness_of_emotions", "cultural_insensitivity"),
    "robustness": ("prompt_attacks", "paradigm_and_distribution_shifts", "interventional_effect",
                   "poisoning_attacks"),
}

#: what each study measures. The safety study's sub-categories depend on which harm categories its
#: keywords come from (``SAFETY_SUBCATEGORY``); this lists the ones its bundled keywords cover.
STUDY_SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "hallucination": ("hallucination",),
    "safety": ("violence", "unlawful_conduct", "harms_to_minor", "adult_content", "mental_health_issues",
               "privacy_violation"),
    "fairness": ("stereotype_bias",),
    "miscalibration": ("miscalibration",),
    "misuse": ("propaganda", "cyberattack", "social_engineering", "misinformation"),
    "copyright": ("leaking_copyrighted_content",),
    "causal": ("limited_causal_reasoning",),
    "typo": ("prompt_attacks", "inconsistency"),
    # XSTest's unsafe contrast prompts probe these; its safe prompts measure OVER_REFUSAL
    "xstest": ("violence", "injustice", "privacy_violation"),
}

#: what XSTest's safe prompts measure (Röttger et al. 2024): refusing what should be answered.
#: None of Liu et al.'s 29 sub-categories is this (the nearest, their safety sub-categories,
#: measure the opposite failure), so it is kept as its own tag outside the 29: items carry it
#: as their sub-category, ``compare`` reports it as a row, and the 7 x 29 grid does not show it.
OVER_REFUSAL = "over_refusal"

#: harm category of a safety keyword file (Liu et al.'s released names) -> sub-category
SAFETY_SUBCATEGORY: dict[str, str] = {
    "adult_content": "adult_content",
    "animal_abuse": "violence",
    "bullying_and_harassment": "violence",
    "child_abuse": "harms_to_minor",
    "conspiracy_theories_and_misinformation": "misinformation",
    "discrimination_and_injustice": "injustice",
    "fraud_and_deception": "unlawful_conduct",
    "hate_speech_and_offensive_language": "toxicity",
    "non-violent_unethical_behavior": "unlawful_conduct",
    "property_crime_and_vandalism": "unlawful_conduct",
    "self-harm": "mental_health_issues",
    "sexual_exploitation_and_human_trafficking": "unlawful_conduct",
    "substance_abuse_and_banned_substances": "unlawful_conduct",
    "terrorism_and_organized_crime": "violence",
    "theft": "unlawful_conduct",
    "violence_and_incitement": "violence",
    "weapons": "violence",
    "privacy": "privacy_violation",
}


def subcategories() -> list[str]:
    return [s for subs in CATEGORIES.values() for s in subs]


def category_of(sub: str) -> str:
    for cat, subs in CATEGORIES.items():
        if sub in subs:
            return cat
    raise KeyError(f"unknown sub-category {sub!r}")


def studies_for(sub: str) -> list[str]:
    category_of(sub)  # raises on a name not in the taxonomy
    return [study for study, subs in STUDY_SUBCATEGORIES.items() if sub in subs]


def coverage(measured: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One row per sub-category: its category and the studies that measured it in a run
    (``measured``: study -> the sub-categories its items actually covered)."""
    rows: list[dict[str, Any]] = []
    for cat, subs in CATEGORIES.items():
        for sub in subs:
            rows.append({"category": cat, "subcategory": sub,
                         "studies": sorted(st for st, covered in measured.items() if sub in covered)})
    return rows


def _check() -> None:
    known = set(subcategories())
    for study, subs in STUDY_SUBCATEGORIES.items():
        bad = set(subs) - known
        if bad:
            raise AssertionError(f"study {study} names sub-categories not in the taxonomy: {sorted(bad)}")
    bad = set(SAFETY_SUBCATEGORY.values()) - known
    if bad:
        raise AssertionError(f"safety keyword map names unknown sub-categories: {sorted(bad)}")


_check()
