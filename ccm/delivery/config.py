"""The deployment config: which transport each channel uses, with its settings (YAML).

::

    # delivery.yaml -- checked against ccm/schemas/delivery.schema.json
    version: 1
    channels:
      email:
        transport: smtp
        host: smtp.example.com
        port: 587
        security: starttls          # starttls | tls | none
        username: ccm
        password_env: CCM_SMTP_PASSWORD
        bounce_address: bounces@example.com
        rate: 20                    # messages per second, per sender process
        retry: {max_attempts: 5, backoff_seconds: 30, max_backoff_seconds: 3600}
      sms:
        transport: twilio
        account_sid: AC0123456789abcdef0123456789abcdef
        auth_token_env: TWILIO_AUTH_TOKEN
        from: "+15005550006"
        status_callback: https://ccm.example.com/twilio/status
      pdf:
        transport: folder
        path: print-drop

Secrets never appear in the file: a ``*_env`` key names the environment
variable that holds them, and :func:`load_config` reads it from the ``env``
mapping it is given (``os.environ`` by default). Every error names the file
and the key; none shows a secret. Relative paths (``path``, ``ca_file``)
are relative to the config file.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccm._schema import load_yaml, validate_manifest
from ccm.delivery.transport import FolderTransport, Retry, Transport
from ccm.errors import DeliveryConfigError

__all__ = ["DeliveryConfig", "Route", "load_config"]


@dataclass(frozen=True)
class Route:
    """One channel's transport settings (secrets resolved), retry policy and rate limit.

    ``settings`` is the transport's settings object; :meth:`open` builds the
    transport. ``rate`` is messages per second per sender process (``None``:
    no limit).
    """

    channel: str
    transport: str
    settings: Any = field(repr=False)
    retry: Retry = field(default_factory=Retry)
    rate: float | None = None

    def open(self) -> Transport:
        """A new transport for this route (SMS and webhook need ``ccm-engine[delivery]``)."""
        if self.transport == "smtp":
            from ccm.delivery.smtp import SmtpTransport

            return SmtpTransport(self.settings)
        if self.transport == "folder":
            return FolderTransport(self.settings)
        try:
            if self.transport == "twilio":
                from ccm.delivery.sms import TwilioTransport

                return TwilioTransport(self.settings)
            from ccm.delivery.webhook import WebhookTransport

            return WebhookTransport(self.settings)
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
            raise DeliveryConfigError(
                f"the {self.transport} transport needs httpx: pip install 'ccm-engine[delivery]'",
                key=f"channels.{self.channel}.transport",
            ) from exc


@dataclass(frozen=True)
class DeliveryConfig:
    """The routes by channel, and the file they came from (``None`` when built in code)."""

    routes: Mapping[str, Route]
    path: Path | None = None

    def __post_init__(self) -> None:
        for channel, route in self.routes.items():
            if route.channel != channel:
                raise ValueError(f"route for {channel!r} says channel {route.channel!r}")


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
                ) -> DeliveryConfig:
    """Read and check ``delivery.yaml``; secrets come from ``env`` (default ``os.environ``).

    Raises :class:`~ccm.errors.DeliveryConfigError` naming the file and the
    key (``channels.email.password_env``) for a schema violation, a missing
    environment variable or an invalid value.
    """
    file = Path(path)
    environ = os.environ if env is None else env
    if not file.is_file():
        raise DeliveryConfigError(f"{file}: no such delivery config file", path=str(file),
                                  key="(file)")
    doc = load_yaml(file, DeliveryConfigError)
    validate_manifest(doc, "delivery", file, DeliveryConfigError)
    _finite(file, doc, "")
    routes: dict[str, Route] = {}
    for channel, raw in doc["channels"].items():
        routes[channel] = _route(file, channel, raw, environ)
    return DeliveryConfig(routes, file)


def _finite(file: Path, value: Any, key: str) -> None:
    """Refuse YAML's ``.nan`` and ``.inf`` anywhere: they pass every bound of the schema
    (``nan > 0`` and ``nan <= 0`` are both false) and would break a sender mid-message."""
    if isinstance(value, float) and not math.isfinite(value):
        raise DeliveryConfigError(f"{file}: {key}: {value} is not a finite number; write a "
                                  "number (YAML's .nan and .inf are refused)",
                                  path=str(file), key=key)
    if isinstance(value, dict):
        for name, item in value.items():
            _finite(file, item, f"{key}.{name}" if key else str(name))


@contextmanager
def _at(file: Path, key: str) -> Iterator[None]:
    """Turn a settings object's ValueError into an error naming the file and key."""
    try:
        yield
    except ValueError as exc:
        raise DeliveryConfigError(f"{file}: {key}: {exc}", path=str(file), key=key) from None


def _secret(file: Path, key: str, name: str, env: Mapping[str, str]) -> str:
    value = env.get(name)
    if not value:
        raise DeliveryConfigError(
            f"{file}: {key}: environment variable {name} is not set (it holds the secret; "
            "secrets never go into the config file)", path=str(file), key=key)
    return value


def _route(file: Path, channel: str, raw: Mapping[str, Any], env: Mapping[str, str]) -> Route:
    key = f"channels.{channel}"
    kind = raw["transport"]
    retry_raw = raw.get("retry") or {}
    with _at(file, f"{key}.retry"):
        retry = Retry(
            max_attempts=int(retry_raw.get("max_attempts", 5)),
            backoff=float(retry_raw.get("backoff_seconds", 30)),
            max_backoff=float(retry_raw.get("max_backoff_seconds",
                                            max(3600.0, retry_raw.get("backoff_seconds", 30)))),
        )
    settings: Any
    if kind == "smtp":
        from ccm.delivery.smtp import SmtpSettings

        password = None
        if "password_env" in raw:
            password = _secret(file, f"{key}.password_env", raw["password_env"], env)
        security = raw.get("security", "starttls")
        with _at(file, f"{key}.bounce_address"):
            settings = SmtpSettings(
                host=raw["host"],
                port=int(raw.get("port", {"starttls": 587, "tls": 465, "none": 25}[security])),
                security=security,
                username=raw.get("username"),
                password=password,
                bounce_address=raw["bounce_address"],
                timeout=float(raw.get("timeout_seconds", 30)),
                ca_file=str(_relative(file, raw["ca_file"])) if raw.get("ca_file") else None,
                local_hostname=raw.get("local_hostname"),
            )
    elif kind == "twilio":
        try:
            from ccm.delivery.sms import TwilioSettings
        except ModuleNotFoundError as exc:
            raise DeliveryConfigError(
                f"{file}: {key}.transport: twilio needs httpx: pip install 'ccm-engine[delivery]'",
                path=str(file), key=f"{key}.transport") from exc
        token = _secret(file, f"{key}.auth_token_env", raw["auth_token_env"], env)
        with _at(file, key):
            settings = TwilioSettings(
                account_sid=raw["account_sid"], auth_token=token, from_=raw.get("from"),
                messaging_service_sid=raw.get("messaging_service_sid"),
                status_callback=raw.get("status_callback"),
                api_base=raw.get("api_base", "https://api.twilio.com"),
                timeout=float(raw.get("timeout_seconds", 15)),
            )
    elif kind == "webhook":
        from ccm.delivery.webhook import WebhookSettings

        # The webhook module imports httpx only to send; a config that will send is
        # refused now, before a sender starts, when the extra is missing.
        try:
            importlib.import_module("httpx")
        except ModuleNotFoundError as exc:
            raise DeliveryConfigError(
                f"{file}: {key}.transport: webhook needs httpx: pip install 'ccm-engine[delivery]'",
                path=str(file), key=f"{key}.transport") from exc
        secret = _secret(file, f"{key}.secret_env", raw["secret_env"], env)
        with _at(file, f"{key}.secret_env"):
            settings = WebhookSettings(url=raw["url"], secret=secret.encode("utf-8"),
                                       timeout=float(raw.get("timeout_seconds", 15)))
    else:
        settings = _relative(file, raw["path"])
    return Route(channel=channel, transport=kind, settings=settings, retry=retry,
                 rate=float(raw["rate"]) if raw.get("rate") is not None else None)


def _relative(file: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (file.parent / path)
