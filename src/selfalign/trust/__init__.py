"""Trustworthiness evaluation after Liu et al. 2023, "Trustworthy LLMs: a Survey and Guideline for
Evaluating Large Language Models' Alignment" (arXiv 2308.05374): the 7 x 29 taxonomy
(:mod:`.taxonomy`), the paper's eight measurement studies and XSTest's over-refusal study
(Röttger et al. 2024) as plug-in tasks on the shared runner (:mod:`.studies`, one module per
study, registered with ``@register_study``; their rule judges live in :mod:`selfalign.judges`), the held-out keys of a ``to-data`` split (:mod:`.holdout`), failures turned into
training rows (:mod:`.to_data`), runs compared per study and per sub-category (:mod:`.run`), and the safety loop read as a
trade-off against over-refusal (:mod:`.tradeoff`).

Imports go one way: ``taxonomy``, ``holdout`` <- ``studies`` <- ``to_data``, ``run``
<- ``cli``."""
