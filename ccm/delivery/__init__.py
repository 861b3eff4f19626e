"""Delivery: transports, the outbox, senders and the events that come back (bounces, callbacks).

Rendering and sending are two steps joined by the record: a rendered message
is queued with a due time; a sender takes due messages and hands each to the
transport configured for its channel. See docs/delivery.md.
"""
