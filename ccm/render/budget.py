"""Render budgets: time, output size and value size ("memory"), one mechanism for every caller.

A :class:`Budget` is the configuration (engine options, lowered -- never
raised -- per template by ``budget:`` in ``template.yaml``); :meth:`Budget.start`
gives the :class:`Meter` of one document, which every stage of that document
shares:

* Jinja: the sandbox (:mod:`ccm.render.sandbox`) counts steps on every call,
  filter, test (also those ``map``, ``select`` and the like call), operator
  and loop iteration, a step on a big value weighing more, and looks at the
  clock every few steps, so a template that computes without writing
  anything still stops on time; values a template builds (``*``, ``+``,
  ``**``, ``~``, ``%``, filters, methods, ``range``, ``lipsum``) may not
  exceed ``max_value`` items or characters, checked *before* the big ones
  are built where the arguments tell their size;
* the output of each source may not exceed ``max_output`` characters;
* PDF layout gets the same deadline (:func:`ccm.channels.pdf.render_document`,
  a ``SIGALRM`` timer on the main thread); an email's is checked before and
  after its MJML compile (:mod:`ccm.render.finish`).

The clock is read between Python-level steps: one C call (a sort, a join,
an MJML compile) runs to its end, bounded by the value budget's sizes.

Wherever the engine renders -- :meth:`Engine.render`, ``ccm render``, the
preview, proofs, batch workers -- it is this meter. Batch workers add
process limits on top (``RLIMIT_AS``, ``RLIMIT_CPU``: ``WorkerLimits``).
Exceeding any budget raises :class:`~ccm.errors.BudgetError` naming the
template source and the budget (``time``, ``size``, ``value``, ``depth``).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ccm.errors import BudgetError

__all__ = ["DEFAULT_MAX_VALUE", "Budget", "Meter", "current_meter"]

#: Largest string/list (characters or items) a template may build by default.
DEFAULT_MAX_VALUE = 1_000_000
#: Steps (calls, operators, output chunks) between two looks at the clock.
_TICKS = 32


@dataclass(frozen=True)
class Budget:
    """What one document may use: ``seconds``, ``max_output`` characters per source,
    ``max_value`` characters/items per value a template builds."""

    seconds: float = 30.0
    max_output: int = 5_000_000
    max_value: int = DEFAULT_MAX_VALUE

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError("budget seconds must be positive")
        if self.max_output < 1024:
            raise ValueError("budget max_output must be at least 1024")
        if self.max_value < 1024:
            raise ValueError("budget max_value must be at least 1024")

    def override(self, raw: Mapping[str, Any]) -> Budget:
        """This budget with a template's ``budget:`` mapping applied, as a ceiling.

        A template may only lower the operator's limits (``RenderOptions``): the
        template is semi-trusted, the operator is not, so ``budget: {seconds:
        100000}`` in a ``template.yaml`` still stops at the engine's time budget.
        """
        return Budget(
            seconds=min(float(raw.get("seconds", self.seconds)), self.seconds),
            max_output=min(int(raw.get("max_output_bytes", self.max_output)), self.max_output),
            max_value=min(int(raw.get("max_value_size", self.max_value)), self.max_value),
        )

    def start(self, now: float | None = None) -> Meter:
        """The meter of one document, its clock starting now."""
        return Meter((time.monotonic() if now is None else now) + self.seconds, self)


class Meter:
    """One document's running budget: a ``time.monotonic()`` deadline and the limits."""

    __slots__ = ("budget", "deadline", "max_output", "max_value", "name", "seconds", "ticks")

    def __init__(self, deadline: float, budget: Budget) -> None:
        self.deadline = deadline
        self.budget = budget
        self.seconds = budget.seconds
        self.max_output = budget.max_output
        self.max_value = budget.max_value
        self.name = ""
        self.ticks = _TICKS

    def error(self, kind: str, detail: str) -> BudgetError:
        """A :class:`BudgetError` for the source being rendered."""
        where = self.name or "template"
        return BudgetError(f"{where}: {detail}", path=self.name or None, budget=kind)

    def check_time(self) -> None:
        """Raise :class:`BudgetError` when the deadline has passed."""
        if time.monotonic() > self.deadline:
            raise self.error("time", f"rendering exceeded its {self.seconds:g} s time budget")

    def tick(self) -> None:
        """Count one step; every few steps, :meth:`check_time` (the clock costs more than this)."""
        self.ticks -= 1
        if self.ticks <= 0:
            self.ticks = _TICKS
            self.check_time()
        # (CCMSandbox.call inlines the decrement; it calls this once ticks reach 0.)

    def step(self, weight: int) -> None:
        """Count ``weight`` steps: a call on a large value weighs more than a small one, so
        a filter run a million times over big lists (through ``map``) reads the clock often."""
        self.ticks -= weight
        if self.ticks <= 0:
            self.ticks = _TICKS
            self.check_time()

    def too_big(self, size: int, what: str = "value") -> BudgetError:
        # The size is left out: it may be made from the request (a phone number's digits).
        return self.error(
            "value", f"a {what} over the budget of {self.max_value} items/characters "
            "(budget.max_value_size)")


_current: contextvars.ContextVar[Meter | None] = contextvars.ContextVar("ccm_meter", default=None)
#: The meter used when a template renders outside :func:`metered` (lint, tests).
_FALLBACK = Budget().start(float("inf"))


def current_meter() -> Meter:
    """The meter of the document being rendered (an unlimited-time one outside a render)."""
    return _current.get() or _FALLBACK


@contextmanager
def metered(meter: Meter, name: str) -> Iterator[Meter]:
    """Make ``meter`` the current one while ``name`` renders."""
    previous_name = meter.name
    meter.name = name
    token = _current.set(meter)
    try:
        yield meter
    finally:
        _current.reset(token)
        meter.name = previous_name
