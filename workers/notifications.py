"""The inbox sink and the ``email.send`` handler: events into inboxes, emails out, once.

The sink (``@sink("inbox")``) runs in the ``event.dispatch`` job's transaction and only writes
rows: inbox rows, and one ``email.send`` outbox row per recipient who wants the kind by email
(``market.services.notifications.deliver_event``). Sending is that row's own job, so a down SMTP
server fails only the email job, which the outbox retries (RQ retries, then the sweeper) until
it is sent or dead; the business write and the inbox rows are long committed.

Sending: SMTP (stdlib ``smtplib`` and ``email.message``: the maintained standard library does
all a plain-text message needs, with no dependency to keep up) when ``MAIL_SMTP_HOST`` is set,
else, in the embedded default, a ``.eml`` file under ``MAIL_DIR`` (``instance/mail/``), written
to a temporary name and renamed so a reader never sees half a message. The Message-ID is
derived from the outbox row, so a duplicate (a crash between SMTP's acceptance and the commit)
is recognisable; once the commit that records the delivery (``EmailDelivery``, ``sent_at``) is
made, a retried job sends nothing.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

from flask import current_app

from market.clock import utcnow
from market.extensions import db
from market.models import EmailDelivery, OutboxEvent, OutboxTopic
from market.services.events import Event, sink
from market.services.notification_texts import ZH, language_of, render, render_invitation
from market.services.notifications import deliver_event, mail_transport
from workers.outbox import handles

FOOTER = {
    ZH: "\n\n——\n粤链通 StrongChain Exchange。收件设置:PUT /api/v1/notifications/preferences",
    "en": "\n\n--\nStrongChain Exchange. What you receive: PUT /api/v1/notifications/preferences",
}


@sink("inbox")
def inbox_sink(event: Event) -> None:
    deliver_event(event)


def message_id_of(row: OutboxEvent) -> str:
    """Stable for the row (its id and creation time), unique across databases in practice."""
    created = row.created_at.isoformat() if row.created_at else ""
    digest = hashlib.sha256(f"{row.id}:{created}:{row.payload.get('to')}".encode()).hexdigest()
    domain = parseaddr(current_app.config["MAIL_FROM"])[1].rpartition("@")[2] or "localhost"
    return f"<email.{row.id}.{digest[:20]}@{domain}>"


def _content(payload: dict[str, Any]) -> tuple[str, str]:
    lang = language_of(payload.get("locale"))
    if payload.get("template") == "invitation":
        return render_invitation(payload.get("facts") or {}, lang)
    subject, body = render(
        str(payload.get("kind")),
        str(payload.get("subject_type")),
        int(payload.get("subject_id") or 0),
        payload.get("data") or {},
        lang,
    )
    return subject, body + FOOTER[lang]


def build_message(row: OutboxEvent) -> EmailMessage:
    subject, body = _content(row.payload)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = row.payload["to"]
    message["Message-ID"] = message_id_of(row)
    message["Date"] = format_datetime(row.created_at or utcnow())
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = language_of(row.payload.get("locale"))
    message.set_content(body)
    return message


def send_smtp(message: EmailMessage) -> None:
    """Hand the message to the configured SMTP server; any failure raises (the job retries)."""
    config = current_app.config
    host, port = config["MAIL_SMTP_HOST"], int(config["MAIL_SMTP_PORT"])
    timeout = float(config["MAIL_SMTP_TIMEOUT"])
    smtp: smtplib.SMTP
    if config["MAIL_SMTP_SSL"]:
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if config["MAIL_SMTP_STARTTLS"] and not config["MAIL_SMTP_SSL"]:
            smtp.starttls(context=ssl.create_default_context())
        if config.get("MAIL_SMTP_USER"):
            smtp.login(config["MAIL_SMTP_USER"], config.get("MAIL_SMTP_PASSWORD") or "")
        smtp.send_message(message)


def mail_dir() -> Path:
    configured = current_app.config.get("MAIL_DIR")
    return Path(configured) if configured else Path(current_app.config["INSTANCE_DIR"]) / "mail"


def write_eml(message: EmailMessage) -> Path:
    """Write the message as ``<message id>.eml``, atomically (temporary file, then rename)."""
    folder = mail_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = str(message["Message-ID"]).strip("<>").replace("@", "_at_").replace("/", "_")
    target = folder / f"{name}.eml"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".eml")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(message.as_bytes())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


@handles(OutboxTopic.EMAIL_SEND)
def send_email(row: OutboxEvent) -> None:
    """Send one email (or write its ``.eml``) and record it as sent, unless it already was."""
    if db.session.get(EmailDelivery, row.id) is not None:
        return
    transport = mail_transport()
    if transport == "none":
        row.worker_note = "mail is not configured: not sent"
        return
    message = build_message(row)
    if transport == "smtp":
        send_smtp(message)
    else:
        write_eml(message)
    db.session.add(
        EmailDelivery(
            outbox_id=row.id,
            message_id=str(message["Message-ID"]),
            recipient=row.payload["to"],
            transport=transport,
            sent_at=utcnow(),
        )
    )
    if row.payload.get("template") == "invitation":
        # The link holds the raw invitation token: keep it in the database no longer than
        # needed (the invitations table keeps only its hash).
        facts = dict(row.payload.get("facts") or {}) | {"link": "(sent)"}
        row.payload = row.payload | {"facts": facts}
