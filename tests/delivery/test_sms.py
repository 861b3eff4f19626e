"""The SMS transport against a local server implementing Twilio's Messages resource."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from ccm.delivery.sms import TwilioSettings, TwilioTransport
from ccm.errors import DeliveryConfigError, PermanentDeliveryError, TemporaryDeliveryError
from ccm.message import Outgoing

from ._servers import SmsApi, sms_api

NUMBER = "+447700900123"


def sms(to: str = NUMBER, text: str = "Your payment of £86.40 is due.") -> Outgoing:
    return Outgoing(message_id=uuid.uuid4().hex, customer_id="C-1", channel="sms",
                    recipient=to, content=text.encode("utf-8"))


def transport(api: SmsApi, token: str | None = None) -> TwilioTransport:
    return TwilioTransport(TwilioSettings(
        account_sid=api.account_sid, auth_token=token or api.auth_token,
        from_="+15005550006", status_callback="https://ccm.example/callbacks/twilio?v=1",
        api_base=api.base, timeout=10))


def test_a_message_is_posted_form_encoded_and_the_sid_is_the_receipt() -> None:
    """To, From, Body and a StatusCallback naming the message reach the provider; its sid
    comes back as the receipt's provider id."""
    with sms_api() as api:
        t = transport(api)
        message = sms()
        receipt = t.send(message)
        t.close()
    form = api.requests[0]
    assert (form["To"], form["From"], form["Body"]) == (NUMBER, "+15005550006",
                                                       "Your payment of £86.40 is due.")
    query = parse_qs(urlsplit(form["StatusCallback"]).query)
    assert query == {"v": ["1"], "m": [message.message_id]}
    assert receipt.provider_id == f"SM{1:032x}" and receipt.status == "queued"


@pytest.mark.parametrize(("code", "text"), [(21211, "The 'To' number +447700900999 is not a "
                                              "valid phone number."),
                                             (21610, "Attempt to send to unsubscribed recipient")])
def test_documented_recipient_errors_are_permanent(code: int, text: str) -> None:
    """21211 (invalid To) and 21610 (unsubscribed) fail at once; the error names the code and
    its meaning but not the number."""
    with sms_api() as api:
        api.errors["+447700900999"] = (400, code, text)
        with pytest.raises(PermanentDeliveryError) as info:
            transport(api).send(sms("+447700900999"))
    assert info.value.code == code  # type: ignore[attr-defined]
    assert "+447700900999" not in str(info.value) and str(code) in str(info.value)


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_and_server_errors_are_temporary(status: int) -> None:
    """429 and 5xx are retried later; the next request goes through."""
    with sms_api() as api:
        api.busy.append(status)
        t = transport(api)
        with pytest.raises(TemporaryDeliveryError):
            t.send(sms())
        t.send(sms())
        t.close()
    assert len(api.requests) == 1


def test_wrong_credentials_stop_the_sender_without_showing_the_token() -> None:
    """A 401 is a configuration error naming the setting, never the token."""
    with sms_api() as api, pytest.raises(DeliveryConfigError) as info:
        transport(api, token="not-the-token-xyz").send(sms())
    assert "not-the-token-xyz" not in str(info.value) and "auth_token_env" in str(info.value)


def test_an_unreachable_provider_is_temporary() -> None:
    """Nothing listening: temporary, naming the host."""
    with sms_api() as api:
        base = api.base
    t = TwilioTransport(TwilioSettings(account_sid="AC" + "0" * 32, auth_token="x",
                                       from_="+15005550006", api_base=base))
    with pytest.raises(TemporaryDeliveryError, match="cannot be reached"):
        t.send(sms())
    t.close()


def test_settings_refuse_nonsense() -> None:
    """An account SID must start with AC, and exactly one sender is given."""
    with pytest.raises(ValueError, match="AC"):
        TwilioSettings(account_sid="XX1", auth_token="t", from_="+1")
    with pytest.raises(ValueError, match="exactly one"):
        TwilioSettings(account_sid="AC1", auth_token="t")
