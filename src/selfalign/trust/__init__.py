"""Trustworthiness evaluation after Liu et al. 2023, "Trustworthy LLMs: a Survey and Guideline for
Evaluating Large Language Models' Alignment" (arXiv 2308.05374): the 7 x 29 taxonomy
(:mod:`.taxonomy`), the paper's eight measurement studies and XSTest's over-refusal study
(Röttger et al. 2024) as plug-in tasks on the shared runner (:mod:`.studies`, one module per
study, registered with ``@register_study``), a binary refusal detector validated on labelled sets
(:mod:`.refusal`), the held-out keys of a ``to-data`` split (:mod:`.holdout`), failures turned into
training rows (:mod:`.to_data`), and runs compared per study and per sub-category (:mod:`.run`).

Imports go one way: ``taxonomy``, ``refusal``, ``holdout`` <- ``studies`` <- ``to_data``, ``run``
<- ``cli``."""
