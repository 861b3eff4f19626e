"""delivery.yaml: routes from the file, secrets from the environment, errors naming file+key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccm.delivery import load_config
from ccm.delivery.sms import TwilioSettings
from ccm.delivery.smtp import SmtpSettings
from ccm.errors import DeliveryConfigError

FULL = """\
version: 1
channels:
  email:
    transport: smtp
    host: smtp.example.com
    username: ccm
    password_env: CCM_SMTP_PASSWORD
    bounce_address: bounces@example.com
    rate: 20
    retry: {max_attempts: 3, backoff_seconds: 10}
  sms:
    transport: twilio
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token_env: TWILIO_AUTH_TOKEN
    from: "+15005550006"
  pdf:
    transport: folder
    path: print-drop
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "delivery.yaml"
    path.write_text(text, "utf-8")
    return path


def test_a_full_config_builds_every_route(tmp_path: Path) -> None:
    """Each channel gets its transport with settings, retry and rate; secrets come from the
    env mapping given; the folder is relative to the file."""
    env = {"CCM_SMTP_PASSWORD": "pw-123", "TWILIO_AUTH_TOKEN": "tok-456"}
    config = load_config(write(tmp_path, FULL), env=env)
    email, sms, pdf = (config.routes[c] for c in ("email", "sms", "pdf"))
    assert isinstance(email.settings, SmtpSettings)
    assert (email.settings.port, email.settings.password, email.rate) == (587, "pw-123", 20.0)
    assert (email.retry.max_attempts, email.retry.backoff) == (3, 10.0)
    assert isinstance(sms.settings, TwilioSettings) and sms.settings.auth_token == "tok-456"
    assert pdf.settings == tmp_path / "print-drop"
    assert "pw-123" not in repr(config) and "tok-456" not in repr(config)


def test_a_missing_secret_names_the_key_and_the_variable(tmp_path: Path) -> None:
    """An unset variable is an error naming the file, the key and the variable."""
    with pytest.raises(DeliveryConfigError) as info:
        load_config(write(tmp_path, FULL), env={"TWILIO_AUTH_TOKEN": "t"})
    assert str(tmp_path / "delivery.yaml") in str(info.value)
    assert "channels.email.password_env" in str(info.value)
    assert "CCM_SMTP_PASSWORD" in str(info.value)


@pytest.mark.parametrize(("text", "key"), [
    ("version: 1\nchannels:\n  email: {transport: smtp, host: h}\n", "channels.email"),
    ("version: 1\nchannels:\n  fax: {transport: folder, path: x}\n", "channels"),
    ("version: 1\nchannels:\n  email: {transport: smtp, host: h, bounce_address: a@b, "
     "password: inline}\n", "channels.email"),
    ("version: 2\nchannels: {}\n", "channels"),
    ("version: 1\nchannels:\n  sms: {transport: pigeon}\n", "channels.sms.transport"),
])
def test_schema_violations_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    """Missing bounce address, unknown channel, an inline password, the wrong version or an
    unknown transport: refused, naming the key."""
    with pytest.raises(DeliveryConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.key.startswith(key)  # type: ignore[attr-defined]


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    """A YAML syntax error names the file and line."""
    with pytest.raises(DeliveryConfigError, match=r"delivery.yaml:3: invalid YAML"):
        load_config(write(tmp_path, "version: 1\nchannels:\n  email: : x\n"), env={})


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """No file: the error says which."""
    with pytest.raises(DeliveryConfigError, match="no such delivery config"):
        load_config(tmp_path / "nope.yaml", env={})
