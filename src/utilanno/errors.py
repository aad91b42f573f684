"""Errors that point a person at the offending input."""

from __future__ import annotations


class InputFormatError(ValueError):
    """Malformed input: names the file, the 1-based line (when there is one) and what was expected."""

    def __init__(self, path: str, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class ConfigError(ValueError):
    """A configuration mistake, naming the key and what was expected."""


class EngineError(RuntimeError):
    """An LLM engine gave up (e.g. an endpoint that stays unreachable): the message says where and why."""
