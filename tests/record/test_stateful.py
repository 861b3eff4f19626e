"""A stateful property test: any sequence of record operations matches a simple model."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
)

from ccm.errors import AlreadyErased, ContentErased, CustomerNotFound, IdempotencyConflict
from ccm.record import MasterKey, Record
from ccm.record.policy import Cap
from ccm.record.store import EVENT_KINDS

from ._support import EPOCH, T0, entry

CUSTOMERS = ("C1", "C2", "C3")
KEYS = ("k1", "k2", "k3", "k4")
CAP = Cap(name="daily", max=2, window_days=1, message_type="marketing")


@dataclass
class Model:
    """What the record should hold."""

    customer: str
    channel: str
    message_type: str
    status: str
    content: bytes
    created: object
    erased: bool = False
    events: list[str] = field(default_factory=list)


class RecordMachine(RuleBasedStateMachine):
    """Appends (with repeated keys and caps), events, erasures; verify always passes.

    Erasing an unknown customer, or one erased with nothing archived since, is refused.
    """

    messages = Bundle("messages")

    def __init__(self) -> None:
        super().__init__()
        self.record = Record("sqlite://", master_key=MasterKey.generate())
        self.model: dict[str, Model] = {}
        self.keys: dict[str, tuple[str, str]] = {}
        self.clock = T0
        self.consent: dict[str, dict[str, bool]] = {c: {} for c in CUSTOMERS}
        self.erasures = 0
        #: Customers erased with nothing archived since (a second erase is refused).
        self.shredded: set[str] = set()

    def _generated_marketing(self, customer: str) -> int:
        since = self.clock - CAP.window
        return sum(
            1 for m in self.model.values()
            if m.customer == customer and m.status == "generated"
            and m.message_type == "marketing" and m.created >= since  # type: ignore[operator]
        )

    @rule(
        target=messages,
        customer=st.sampled_from(CUSTOMERS),
        key=st.none() | st.sampled_from(KEYS),
        params=st.sampled_from(("a", "b")),
        channel=st.sampled_from(("pdf", "email", "sms")),
        message_type=st.sampled_from(("operational", "marketing")),
        content=st.binary(min_size=1, max_size=48),
        capped=st.booleans(),
        hours=st.integers(min_value=0, max_value=30),
    )
    def append(self, customer: str, key: str | None, params: str, channel: str,
               message_type: str, content: bytes, capped: bool, hours: int) -> object:
        self.clock += timedelta(hours=hours)
        e = entry(customer, key=key, params=params, channel=channel, message_type=message_type,
                  created_at=self.clock)
        caps = [CAP] if capped else []
        if key is not None and key in self.keys:
            earlier, earlier_params = self.keys[key]
            if earlier_params == params:
                result = self.record.append(e, content=content, caps=caps)
                assert result.status == "duplicate"
                assert result.entry.message_id == earlier
            else:
                with pytest.raises(IdempotencyConflict):
                    self.record.append(e, content=content, caps=caps)
            return multiple()
        over = capped and message_type == "marketing" and self._generated_marketing(customer) >= 2
        result = self.record.append(e, content=content, caps=caps)
        assert result.status == ("suppressed" if over else "generated")
        assert result.reason == ("cap:daily" if over else None)
        self.model[e.message_id] = Model(customer, channel, message_type, result.status, content,
                                         self.clock)
        if result.status == "generated":
            self.shredded.discard(customer)
        self.keys[e.idempotency_key] = (e.message_id, params)
        return e.message_id

    @rule(message_id=messages, kind=st.sampled_from(EVENT_KINDS))
    def add_event(self, message_id: str, kind: str) -> None:
        self.record.add_event(message_id, kind, data={"n": len(self.model[message_id].events)})
        m = self.model[message_id]
        m.events.append(kind)
        # What the contact policy reads, in order (ccm.record.entries.fold_consent).
        consent, blocked = self.consent[m.customer], f"blocked:{m.channel}"
        if kind in ("opted_out", "complained", "opted_in"):
            consent[m.channel] = kind == "opted_in"
        if kind in ("opted_in", "unsuppressed"):
            consent.pop(blocked, None)
        elif kind == "suppressed":
            consent[blocked] = False

    @rule(customer=st.sampled_from(CUSTOMERS))
    def erase(self, customer: str) -> None:
        if not any(m.customer == customer for m in self.model.values()):
            with pytest.raises(CustomerNotFound):
                self.record.erase(customer)
            return
        if customer in self.shredded:
            with pytest.raises(AlreadyErased):
                self.record.erase(customer)
            return
        self.record.erase(customer)
        self.shredded.add(customer)
        self.erasures += 1
        for m in self.model.values():
            if m.customer == customer:
                m.erased = True

    @rule(message_id=messages)
    def read_content(self, message_id: str) -> None:
        m = self.model[message_id]
        if m.status != "generated":
            return
        if m.erased:
            with pytest.raises(ContentErased):
                self.record.content(message_id)
        else:
            assert self.record.content(message_id) == m.content

    @rule(message_id=consumes(messages))
    def read_entry(self, message_id: str) -> None:
        stored = self.record.get(message_id)
        m = self.model[message_id]
        assert (stored.customer_id, stored.channel, stored.status) == (m.customer, m.channel,
                                                                       m.status)
        assert [e.kind for e in self.record.events(message_id)] == m.events

    @invariant()
    def verifies(self) -> None:
        report = self.record.verify()
        assert report.ok, report.problems
        events = sum(len(m.events) for m in self.model.values())
        assert report.checked == len(self.model) + events + self.erasures

    @invariant()
    def counts_match(self) -> None:
        for customer in CUSTOMERS:
            mine = [m for m in self.model.values() if m.customer == customer]
            assert self.record.count(customer, since=EPOCH) == sum(
                1 for m in mine if m.status == "generated")
            assert self.record.count(customer, since=EPOCH, status="suppressed") == sum(
                1 for m in mine if m.status == "suppressed")
            assert self.record.consent_overrides(customer) == self.consent[customer]

    def teardown(self) -> None:
        self.record.close()


RecordMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_record_state_machine = RecordMachine.TestCase
