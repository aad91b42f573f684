"""Plumbing shared by the stage commands in `scripts/`: input errors end a command as one line."""

from __future__ import annotations

import click

from utilanno.errors import ConfigError, EngineError, InputFormatError


class StageGroup(click.Group):
    """A click group whose commands end with `Error: <file>:<line>: <reason>` on a damaged or malformed
    input, or with the engine's one-line reason when an LLM endpoint gives up (exit status 1), never with a
    traceback that hides the file's name."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (InputFormatError, ConfigError, EngineError) as err:
            raise click.ClickException(str(err)) from None
