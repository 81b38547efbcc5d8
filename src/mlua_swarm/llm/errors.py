"""Errors of the LLM runtime; each message names the setting that fixes it."""

from __future__ import annotations

EXTRA_HINT = "pip install 'mlua-swarm[llm]'"


class LlmError(Exception):
    """A model call or its configuration failed; `str()` is the message for the step's error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LlmConfigError(LlmError):
    """The provider, model, key or endpoint is not configured well enough to make a call."""


class MissingExtra(LlmConfigError):
    """The provider's SDK is not installed."""

    def __init__(self, package: str) -> None:
        super().__init__(f"the '{package}' package is needed for LLM agents: {EXTRA_HINT}")
        self.package = package


__all__ = ["EXTRA_HINT", "LlmConfigError", "LlmError", "MissingExtra"]
