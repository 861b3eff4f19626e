"""Delivery reports as mail servers write them, built per the RFCs (not captured files).

* :func:`dsn` -- RFC 3464: ``multipart/report; report-type=delivery-status``
  with a human part, a ``message/delivery-status`` part (per-message fields,
  a blank line, per-recipient fields) and the returned headers
  (``text/rfc822-headers``, RFC 6522).
* :func:`arf` -- RFC 5965: ``multipart/report; report-type=feedback-report``
  with a ``message/feedback-report`` part and the original message.
"""

from __future__ import annotations

BOUNCES = "bounces@mail.example.com"


def verp(message_id: str) -> str:
    local, domain = BOUNCES.split("@")
    return f"{local}+{message_id}@{domain}"


def original_headers(message_id: str, *, verp_return: bool = True) -> str:
    ret = verp(message_id) if verp_return else "noreply@mail.example.com"
    return (
        f"Return-Path: <{ret}>\r\n"
        "From: Acme Bank <statements@mail.example.com>\r\n"
        "To: Eleanor Whitfield <eleanor@example.net>\r\n"
        "Subject: Your statement\r\n"
        f"X-CCM-Message-ID: {message_id}\r\n"
        "Message-ID: <abc@mail.example.com>\r\n"
    )


def dsn(
    message_id: str,
    *,
    status: str = "5.1.1",
    action: str = "failed",
    to: str | None = None,
    envelope_id: str | None = None,
    returned: str | None = None,
    diagnostic: str = "smtp; 550 5.1.1 <eleanor@example.net>: Recipient address rejected",
) -> bytes:
    """A DSN for one recipient; ``to`` is the report's To (default: the VERP address)."""
    envid = f"Original-Envelope-Id: {envelope_id}\r\n" if envelope_id else ""
    returned = original_headers(message_id) if returned is None else returned
    text = (
        "Return-Path: <>\r\n"
        f"To: {to if to is not None else verp(message_id)}\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n"
        f"{envid}"
        "Arrival-Date: Mon, 3 Mar 2025 12:00:00 +0000\r\n"
        "\r\n"
        "Final-Recipient: rfc822; eleanor@example.net\r\n"
        "Original-Recipient: rfc822; eleanor@example.net\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.example.net\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"{returned}"
        "\r\n"
        "--B1--\r\n"
    )
    return text.encode("ascii")


def arf(message_id: str, *, feedback_type: str = "abuse", mail_from: str | None = None) -> bytes:
    """An RFC 5965 abuse report about the message, as a mailbox provider sends it."""
    sender = verp(message_id) if mail_from is None else mail_from
    text = (
        "From: <abuse@isp.example.net>\r\n"
        "To: <fbl@mail.example.com>\r\n"
        "Subject: FW: Your statement\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report;\r\n"
        '    boundary="part1_13d.2e68ed54_boundary"\r\n'
        "\r\n"
        "--part1_13d.2e68ed54_boundary\r\n"
        "Content-Type: text/plain; charset=\"US-ASCII\"\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "This is an email abuse report for an email message received from IP\r\n"
        "192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n"
        "\r\n"
        "--part1_13d.2e68ed54_boundary\r\n"
        "Content-Type: message/feedback-report\r\n"
        "\r\n"
        f"Feedback-Type: {feedback_type}\r\n"
        "User-Agent: SomeGenerator/1.0\r\n"
        "Version: 1\r\n"
        f"Original-Mail-From: <{sender}>\r\n"
        "Original-Rcpt-To: <eleanor@example.net>\r\n"
        "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n"
        "Source-IP: 192.0.2.1\r\n"
        "\r\n"
        "--part1_13d.2e68ed54_boundary\r\n"
        "Content-Type: message/rfc822\r\n"
        "Content-Disposition: inline\r\n"
        "\r\n"
        f"{original_headers(message_id, verp_return=mail_from is None)}"
        "\r\n"
        "Your statement is ready.\r\n"
        "\r\n"
        "--part1_13d.2e68ed54_boundary--\r\n"
    )
    return text.encode("ascii")
