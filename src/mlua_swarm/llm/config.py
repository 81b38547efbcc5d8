"""Which provider, model, endpoint and key an agent's model call uses.

`profile.model` is `openai:<model>` (an OpenAI-compatible chat-completions endpoint: OpenAI, vLLM,
Ollama, llama.cpp server, LM Studio), `anthropic:<model>`, or a bare `<model>` that goes to the
provider named by `MSE_LLM_PROVIDER` (`openai` when unset). The OpenAI-compatible client talks to
`MSE_LLM_BASE_URL` (OpenAI's API when unset) with `OPENAI_API_KEY`; the Anthropic client uses
`ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL` when set. An agent's `spec.base_url` and
`spec.api_key_env` override the endpoint and the name of the key variable. Everything is read
when the attempt starts, from the process environment.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import LlmConfigError, MissingExtra

ProviderName = Literal["openai", "anthropic"]
PROVIDERS: tuple[ProviderName, ...] = ("openai", "anthropic")
PROVIDER_ENV = "MSE_LLM_PROVIDER"
MODEL_ENV = "MSE_LLM_MODEL"


@dataclass(frozen=True, slots=True)
class ProviderDefaults:
    package: str
    key_env: str
    base_url_env: str
    default_base_url: str


DEFAULTS: dict[ProviderName, ProviderDefaults] = {
    "openai": ProviderDefaults("openai", "OPENAI_API_KEY", "MSE_LLM_BASE_URL", "https://api.openai.com/v1"),
    "anthropic": ProviderDefaults("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved model endpoint. `base_url_setting`/`key_setting` name where the values came from."""

    provider: ProviderName
    model: str
    base_url: str
    base_url_setting: str
    api_key: str | None
    key_setting: str
    custom_endpoint: bool

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"


def split_model(model: str, env: Mapping[str, str] | None = None) -> tuple[ProviderName, str]:
    """`openai:gpt-4o` -> ("openai", "gpt-4o"); a bare name takes the provider from MSE_LLM_PROVIDER."""
    env = os.environ if env is None else env
    prefix, sep, rest = model.partition(":")
    if sep and prefix in PROVIDERS:
        if not rest:
            raise LlmConfigError(f"model {model!r} names no model after '{prefix}:' (e.g. '{prefix}:<model>')")
        return prefix, rest
    provider = env.get(PROVIDER_ENV) or "openai"
    if provider not in PROVIDERS:
        raise LlmConfigError(f"{PROVIDER_ENV}={provider!r} is not a provider; use one of: {', '.join(PROVIDERS)}")
    return provider, model


def require_sdk(provider: ProviderName) -> None:
    """Raise `MissingExtra` (naming `pip install 'mlua-swarm[llm]'`) if the provider's SDK is absent."""
    package = DEFAULTS[provider].package
    if importlib.util.find_spec(package) is None:
        raise MissingExtra(package)


def installed_providers() -> list[ProviderName]:
    """The providers whose SDK is installed."""
    return [p for p in PROVIDERS if importlib.util.find_spec(DEFAULTS[p].package) is not None]


def resolve_endpoint(
    model: str | None,
    *,
    base_url: str | None = None,
    api_key_env: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Endpoint:
    """Resolve `model` (or MSE_LLM_MODEL) to an endpoint; raise `LlmConfigError` naming what to set."""
    env = os.environ if env is None else env
    model = model or env.get(MODEL_ENV)
    if not model:
        raise LlmConfigError(
            f"no model to call: set profile.model (e.g. 'openai:gpt-4o-mini' or 'anthropic:claude-sonnet-4-0') "
            f"or {MODEL_ENV}"
        )
    provider, name = split_model(model, env)
    defaults = DEFAULTS[provider]
    if base_url:
        url, url_setting = base_url, "spec.base_url"
    elif env.get(defaults.base_url_env):
        url, url_setting = env[defaults.base_url_env], defaults.base_url_env
    else:
        url, url_setting = defaults.default_base_url, defaults.base_url_env
    custom = url != defaults.default_base_url
    key_setting = api_key_env or defaults.key_env
    key = env.get(key_setting) or None
    if key is None and not custom:
        raise LlmConfigError(
            f"{key_setting} is not set where this step runs (a run on `mse serve` reads the server's "
            f"environment): export it with your {provider} API key, or point {defaults.base_url_env} at a "
            "server that needs no key"
        )
    return Endpoint(provider, name, url.rstrip("/"), url_setting, key, key_setting, custom)


__all__ = [
    "DEFAULTS",
    "MODEL_ENV",
    "PROVIDERS",
    "PROVIDER_ENV",
    "Endpoint",
    "ProviderName",
    "installed_providers",
    "require_sdk",
    "resolve_endpoint",
    "split_model",
]
