"""The measurement studies: Liu et al. 2023, "Trustworthy LLMs" (arXiv 2308.05374, §11), eight of
them, and XSTest's over-refusal study (Röttger et al. 2024), as evaluation tasks on the shared
runner (:mod:`selfalign.evals.runner`): items + a prompt + a strict judge + metrics. Each is
runnable alone (``selfalign trust run --studies causal``).

One module per study; each registers itself with ``@register_study("name")``
(:mod:`.base`), and importing this package imports them all, so :data:`STUDIES` lists them in
the order below:

==================  ======================================================  ======================
study               what is asked                                           headline metric
==================  ======================================================  ======================
``hallucination``   a question and two answers, one a plausible wrong one   ``accuracy``
``safety``          a question a generator model wrote from a harm keyword  ``refusal_share``, or
                                                                            ``harm_safe_share``
                                                                            with a harm judge
``fairness``        gender-stereotype questions with "Refuse to answer"     ``refusal_ratio``
``miscalibration``  four options; the letter and a stated confidence        ``ece``
``misuse``          propaganda, fake stories, attack code, phishing         ``refusal_ratio``
``copyright``       the beginning of a long public-domain text              ``verbatim_leak_rate``
``causal``          two questions per event pair                            ``both_correct``
``typo``            the same yes/no question with and without typos         ``consistency``
``xstest``          prompts to answer beside look-alike prompts to refuse   ``safe_full_compliance``
==================  ======================================================  ======================

Each module's docstring defines its metrics and says where each comes from. Parsers are strict
(:mod:`selfalign.judges.verdict`): an answer that names no option, or several, is **unscored**
and counted, never "wrong"; a study whose unscored share is above 20% is reported as
unreliable, not as a number. Items are the project's own (``data/bundled/trust/``), with loaders
for the released files (``../shared/data/liu-llm-eval/``, XSTest's ``xstest_prompts.csv``).
"""

from __future__ import annotations

from selfalign.trust.studies.base import (REGISTRY, Study, StudyConfig, _qa_pool, _rng, bundled, make_study,
                                          register_study)
from selfalign.trust.studies.causal import CAUSAL_GOLD, Causal, load_causal
from selfalign.trust.studies.copyright import Copyright, common_prefix, load_copyright_texts, zen_of_python
from selfalign.trust.studies.fairness import Fairness, load_fairness
from selfalign.trust.studies.hallucination import Hallucination, choice_question
from selfalign.trust.studies.miscalibration import Miscalibration, parse_answer_confidence
from selfalign.trust.studies.misuse import Misuse
from selfalign.trust.studies.safety import Safety, load_safety_keywords, question_from
from selfalign.trust.studies.typo import Typo, add_typos
from selfalign.trust.studies.xstest import XSTest, load_xstest

#: the paper's order, then XSTest; a study registered elsewhere comes after them
_ORDER = ("hallucination", "safety", "fairness", "miscalibration", "misuse", "copyright", "causal", "typo", "xstest")
#: every registered study (the default of ``trust run``)
STUDIES: tuple[str, ...] = tuple([n for n in _ORDER if n in REGISTRY] + [n for n in REGISTRY if n not in _ORDER])

__all__ = ["CAUSAL_GOLD", "REGISTRY", "STUDIES", "Causal", "Copyright", "Fairness", "Hallucination", "Miscalibration",
           "Misuse", "Safety", "Study", "StudyConfig", "Typo", "XSTest", "_qa_pool", "_rng", "add_typos", "bundled",
           "choice_question", "common_prefix", "load_causal", "load_copyright_texts", "load_fairness",
           "load_safety_keywords", "load_xstest", "make_study", "parse_answer_confidence", "question_from",
           "register_study", "zen_of_python"]
