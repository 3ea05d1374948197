"""Judges: string-matching correctness, idk detection, and an LLM judge for either."""
