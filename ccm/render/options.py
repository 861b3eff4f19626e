"""Engine options and the ``DEFAULT`` sentinel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ccm.errors import ConfigError
from ccm.render.budget import Budget

__all__ = ["DEFAULT", "RenderOptions"]


class _Default:
    """Sentinel: "use the default" (distinct from ``None``, which means "none")."""

    _instance: _Default | None = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


class OptionError(ConfigError, ValueError):
    """A :class:`RenderOptions` value out of range or of the wrong type: a
    :class:`~ccm.errors.ConfigError` naming the option, and a ``ValueError`` as before."""


@dataclass(frozen=True)
class RenderOptions:
    """Per-engine rendering options; validated at construction."""

    #: Seconds one document may take (Jinja + layout); a template's ``budget.seconds`` may
    #: lower it, never raise it.
    time_budget: float = 30.0
    #: Characters a rendered source may produce before it is refused.
    max_output_chars: int = 5_000_000
    #: Characters or items one value a template builds may have (strings, lists);
    #: a template's ``budget.max_value_size`` may lower it, never raise it.
    max_value_size: int = 1_000_000
    #: Write every PDF as PDF/A-3b (only possible for unencrypted PDFs).
    pdfa: bool = False
    #: Also write the PDF/A-3b archival copy of confidential PDFs when the pack
    #: archives them (previews, which never show it, turn this off).
    archival: bool = True
    #: Refuse to render sources whose digests differ from their approval.
    require_approval: bool = False
    #: Where approvals are kept (``ccm approve`` writes here).
    approvals_file: Path | None = None
    #: Queue every generated message for delivery in the record's outbox (due now, or when
    #: quiet hours end: a deferred message is then generated and queued, not suppressed).
    #: Needs a record with a master key. ``ccm send`` / :class:`ccm.delivery.Sender` send them.
    queue: bool = False
    #: How a confidential PDF reaches the customer by email or SMS: ``attach`` it,
    #: or ``link`` to the retrieval page (the PDF is recorded as its own message
    #: and the message carries ``message.document_url``; docs/retrieval.md).
    document_delivery: Literal["attach", "link"] = "attach"
    #: Give every email a hosted web version ("view in browser"): ``message.web_version_url``.
    web_version: bool = False

    def __post_init__(self) -> None:
        seconds = self.time_budget
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise OptionError("RenderOptions(time_budget=...): give a number of seconds; "
                              f"got {type(seconds).__name__}")
        if not (0 < seconds < float("inf")):  # (NaN too)
            raise OptionError(f"RenderOptions(time_budget={seconds!r}): must be a positive, "
                              "finite number of seconds")
        for name in ("max_output_chars", "max_value_size"):
            value = getattr(self, name)
            if type(value) is not int:
                raise OptionError(f"RenderOptions({name}=...): give a whole number of "
                                  f"characters; got {type(value).__name__}")
            if value < 1024:
                raise OptionError(f"RenderOptions({name}={value!r}): must be at least 1024")
        # A typo here would have attached a confidential PDF that was meant to be linked.
        if self.document_delivery not in ("attach", "link"):
            raise OptionError(f"RenderOptions(document_delivery={self.document_delivery!r}): "
                              "must be 'attach' or 'link'")

    @property
    def budget(self) -> Budget:
        """The engine-wide render budget (a ceiling: templates may only lower it)."""
        return Budget(seconds=self.time_budget, max_output=self.max_output_chars,
                      max_value=self.max_value_size)

