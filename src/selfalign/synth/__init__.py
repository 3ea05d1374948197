"""Self-alignment data synthesis: Self-Instruct, Evol-Instruct, instruction backtranslation,
LLM2LLM, red-team prompts, IFD selection. Each stage: a config dataclass and ``run(cfg, model)``."""
