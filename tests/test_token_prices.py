"""`Usage.cost` and `TokenPrices`: a client given prices reports what each call cost."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from memweave.errors import ConfigurationError
from memweave.llm import OpenAIChatClient, TokenPrices, Usage
from memweave.messages import ChatMessage


def priced_client(prices: TokenPrices | None) -> OpenAIChatClient:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hi"},
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
    }
    sdk = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url="https://llm.test/v1",
        max_retries=0,
        # The SDK types http_client as httpx2's client and accepts httpx's as well.
        http_client=httpx.AsyncClient(  # type: ignore[arg-type]
            transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        ),
    )
    return OpenAIChatClient("gpt-4o-mini", client=sdk, prices=prices)


async def test_complete_with_prices_reports_the_cost() -> None:
    """A client given prices fills in `Usage.cost` from the reported token counts."""
    client = priced_client(TokenPrices.per_million(0.15, 0.60))
    reply = await client.complete([ChatMessage.user("hi")])
    assert reply.usage.cost == pytest.approx(1000 * 0.15e-6 + 200 * 0.60e-6)


async def test_complete_without_prices_leaves_the_cost_unknown() -> None:
    """Without prices `Usage.cost` is None, not zero."""
    reply = await priced_client(None).complete([ChatMessage.user("hi")])
    assert (reply.usage.prompt_tokens, reply.usage.cost) == (1000, None)


def test_openai_client_rejects_prices_of_another_type() -> None:
    """`prices=` takes `TokenPrices` only."""
    with pytest.raises(ConfigurationError, match="prices"):
        OpenAIChatClient("gpt-4o", api_key="sk-test", prices=(0.1, 0.2))  # type: ignore[arg-type]


costs = st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False))


@given(first=costs, second=costs)
def test_usage_sum_adds_the_known_costs(first: float | None, second: float | None) -> None:
    """A sum's cost adds the known costs, and is None only when neither is known."""
    total = Usage(cost=first) + Usage(cost=second)
    if first is None and second is None:
        assert total.cost is None
    else:
        assert total.cost == pytest.approx((first or 0.0) + (second or 0.0))
