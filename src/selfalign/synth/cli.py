"""``selfalign synth <method>``: one command per synthesis method of :mod:`selfalign.synth.methods`."""

from __future__ import annotations

import typer

from selfalign.command import add_commands
from selfalign.synth.methods import COMMANDS, EVAL

app = typer.Typer(no_args_is_help=True, help="Self-alignment data synthesis: sixteen methods, each a registered command, and eval: what SFT on their rows does.")
add_commands(app, [*COMMANDS, EVAL])
