"""Provider selection, endpoint and key resolution, prices and Retry-After parsing."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from mlua_swarm.llm.config import Endpoint, resolve_endpoint
from mlua_swarm.llm.errors import LlmConfigError
from mlua_swarm.llm.prices import PriceFileError, cost_usd, price_of, register_price
from mlua_swarm.llm.providers import RetryPolicy, open_conversation, retry_after
from mlua_swarm.llm.usage import Usage, run_totals

from .fakes import OpenAIServer, Reply


def test_a_bare_model_goes_to_the_provider_named_by_mse_llm_provider() -> None:
    env = {"MSE_LLM_PROVIDER": "anthropic", "ANTHROPIC_API_KEY": "k"}
    endpoint = resolve_endpoint("claude-haiku-4-5", env=env)
    assert (endpoint.provider, endpoint.model, endpoint.base_url) == (
        "anthropic",
        "claude-haiku-4-5",
        "https://api.anthropic.com",
    )
    assert resolve_endpoint("openai:gpt-4o", env={**env, "OPENAI_API_KEY": "o"}).provider == "openai"
    with pytest.raises(LlmConfigError, match="MSE_LLM_PROVIDER='mistral' is not a provider"):
        resolve_endpoint("m", env={"MSE_LLM_PROVIDER": "mistral"})


def test_the_model_may_come_from_mse_llm_model() -> None:
    endpoint = resolve_endpoint(None, env={"MSE_LLM_MODEL": "openai:gpt-4.1", "OPENAI_API_KEY": "k"})
    assert endpoint.label == "openai:gpt-4.1" and endpoint.api_key == "k"
    with pytest.raises(LlmConfigError, match=r"set profile\.model .* or MSE_LLM_MODEL"):
        resolve_endpoint(None, env={})


def test_a_local_endpoint_needs_no_key_and_spec_overrides_win() -> None:
    local = resolve_endpoint("llama3", env={"MSE_LLM_BASE_URL": "http://127.0.0.1:11434/v1/"})
    assert (local.base_url, local.api_key, local.base_url_setting) == (
        "http://127.0.0.1:11434/v1",
        None,
        "MSE_LLM_BASE_URL",
    )
    own = resolve_endpoint(
        "m", base_url="http://10.0.0.5:8000/v1", api_key_env="TEAM_KEY", env={"TEAM_KEY": "t", "OPENAI_API_KEY": "o"}
    )
    assert (own.base_url_setting, own.key_setting, own.api_key) == ("spec.base_url", "TEAM_KEY", "t")


def test_prices_come_from_the_table_a_file_and_registration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cached_input_tokens=1_000_000)
    assert cost_usd("gpt-4o-2024-08-06", usage) == pytest.approx(2.50 + 1.25 + 10.00)
    assert cost_usd("anthropic:claude-sonnet-4-0", usage) == pytest.approx(3.00 + 0.30 + 15.00)
    assert cost_usd("llama3", usage) is None

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"llama3": {"input": 0, "output": 0}, "gpt-4o": {"input": 1, "output": 2}}))
    monkeypatch.setenv("MSE_LLM_PRICES", str(prices))
    assert cost_usd("llama3", usage) == 0
    assert cost_usd("gpt-4o", usage) == pytest.approx(2 + 2)  # no cached price: cached input costs input

    monkeypatch.delenv("MSE_LLM_PRICES")
    monkeypatch.setattr("mlua_swarm.llm.prices._TABLE", {})
    register_price("house-model", 1.0, 4.0, 0.1)
    assert price_of("house-model-v2") == price_of("house-model")
    assert cost_usd("house-model-v2", usage) == pytest.approx(1.0 + 0.1 + 4.0)

    prices.write_text(json.dumps({"x": {"input": "cheap"}}))
    monkeypatch.setenv("MSE_LLM_PRICES", str(prices))
    with pytest.raises(PriceFileError, match=r"MSE_LLM_PRICES=.*'x' needs numeric 'input' and 'output'"):
        price_of("x")


def test_run_totals_count_unknown_prices_apart() -> None:
    known = {"usage": {"input_tokens": 10, "output_tokens": 5}, "cost_usd": 0.5, "num_turns": 2}
    unknown = {"usage": {"total_tokens": 7}, "cost_usd": None, "num_turns": 1}
    totals = run_totals([known, unknown, {"worker_kind": "lua"}, None])
    assert totals == {
        "llm_steps": 2,
        "num_turns": 3,
        "usage": {"input_tokens": 17, "output_tokens": 5, "total_tokens": 22, "cached_input_tokens": 0},
        "cost_usd": 0.5,
        "cost_unknown_steps": 1,
    }
    assert run_totals([unknown])["cost_usd"] is None
    assert run_totals([])["llm_steps"] == 0


def test_retry_after_reads_milliseconds_seconds_and_http_dates() -> None:
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    later = retry_after({"retry-after": formatdate(time.time() + 20, usegmt=True)})
    assert later is not None and 17 < later <= 20
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert policy.delay(1, 100.0) == 8.0  # the server's wait, capped
    assert 0.75 * 4 <= policy.delay(3, None) <= 1.25 * 4  # backoff 1, 2, 4 ... with jitter


async def test_openais_own_api_gets_max_completion_tokens_and_compatible_servers_max_tokens() -> None:
    with OpenAIServer() as server:
        server.play(Reply(text="a"), Reply(text="b"))
        for custom in (False, True):
            endpoint = Endpoint("openai", "m", server.base_url, "MSE_LLM_BASE_URL", "k", "OPENAI_API_KEY", custom)
            conversation = await open_conversation(endpoint, "", "hi", max_tokens=123)
            try:
                await conversation.turn([], _ignore)
            finally:
                await conversation.aclose()
        official, compatible = server.requests
    assert official["max_completion_tokens"] == 123 and "max_tokens" not in official
    assert compatible["max_tokens"] == 123 and "max_completion_tokens" not in compatible


async def _ignore(text: str) -> None:
    return None
