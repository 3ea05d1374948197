"""Trustworthiness evaluation after Liu et al. 2023, "Trustworthy LLMs: a Survey and Guideline for
Evaluating Large Language Models' Alignment" (arXiv 2308.05374): the 7 x 29 taxonomy
(:mod:`.taxonomy`), the eight measurement studies as tasks on the shared runner (:mod:`.studies`),
a refusal detector validated on labelled sets (:mod:`.refusal`), and runs compared per study and
per sub-category (:mod:`.run`)."""
