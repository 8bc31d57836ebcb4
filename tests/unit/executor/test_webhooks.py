"""Webhook signing, backoff and URL checks: pure logic."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook as Verifier

from libs.fetch_guard import FetchGuard
from services.executor.definitions import Webhook, check_webhooks
from services.executor.model import WebhookDelivery
from services.executor.webhooks import DeliveryPolicy, signed_headers
from tests.support.receiver import new_secret


def delivery(body: str, delivery_id: str, secret: str) -> WebhookDelivery:
    now = datetime.now(UTC)
    return WebhookDelivery(delivery_id, "e", "d", "https://x.example/", "execution.completed", body, secret,
                           "pending", 1, None, "", now, now)  # fmt: skip


@given(
    body=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=5),
    suffix=st.text(alphabet="abcdef0123456789", min_size=1, max_size=32),
)
def test_every_delivery_verifies_with_standardwebhooks(body: dict[str, str], suffix: str) -> None:
    import json

    secret = new_secret()
    text = json.dumps(body)
    headers = signed_headers(delivery(text, f"msg_{suffix}", secret))
    assert headers["webhook-id"] == f"msg_{suffix}"
    assert Verifier(secret).verify(text, headers) == body


def test_another_secret_does_not_verify() -> None:
    headers = signed_headers(delivery("{}", "msg_1", new_secret()))
    try:
        Verifier(new_secret()).verify("{}", headers)
    except Exception as exc:
        assert "signature" in str(exc).lower()
    else:
        raise AssertionError("verified with the wrong secret")


@given(attempts=st.integers(min_value=1, max_value=10_000))
def test_backoff_doubles_and_is_capped(attempts: int) -> None:
    policy = DeliveryPolicy(initial_backoff=5.0, max_backoff=3600.0)
    assert 5.0 <= policy.delay(attempts) <= 3600.0
    assert policy.delay(attempts + 1) == min(policy.delay(attempts) * 2, 3600.0)


def test_private_webhook_urls_are_refused_when_private_networks_are_blocked() -> None:
    hook = Webhook(url="http://10.1.2.3/hook", secret=new_secret())
    assert [v.field for v in check_webhooks([hook], FetchGuard())] == []
    assert [v.field for v in check_webhooks([hook], FetchGuard(block_private=True))] == ["webhooks[0].url"]
