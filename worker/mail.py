"""Mail over SMTP: the server from ``SLA_SMTP_URL``, a message, one send, a clear failure.

``smtp://`` insists on STARTTLS (the password never crosses in the clear), ``smtps://``
speaks TLS from the start, ``smtp+plain://`` none (a relay on the same network). The
server's certificate is checked against the system's authorities. The URL's password is
registered as a secret, so no log line carries it; the log names the host and port alone.

A send that fails raises :class:`MailError`, whose ``problem`` says what to fix: the server
cannot be reached, refuses the login or a recipient, or the message is larger than the
server takes (its ``SIZE``, checked before the message goes).
"""

from __future__ import annotations

import email.errors
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, make_msgid
from urllib.parse import unquote, urlsplit

from config.settings import SMTP_SCHEMES
from worker.logs import register_secret

TIMEOUT_SECONDS = 60.0
WIRE = compat32.clone(linesep="\r\n")  # CRLF line ends, as the protocol wants


class MailError(Exception):
    """The server did not take the message; nothing was delivered."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str  # "starttls", "tls" or "none"
    user: str = ""
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """The server of ``SLA_SMTP_URL`` (validated by the settings); its password is
        registered as a secret."""
        parts = urlsplit(url.strip())
        scheme = parts.scheme
        if scheme not in SMTP_SCHEMES or not parts.hostname:
            raise ValueError("SLA_SMTP_URL: expected smtp://, smtps:// or smtp+plain://")
        password = unquote(parts.password or "")
        register_secret(password)
        register_secret(url)
        return cls(
            host=parts.hostname,
            port=parts.port or SMTP_SCHEMES[scheme],
            security={"smtp": "starttls", "smtps": "tls"}.get(scheme, "none"),
            user=unquote(parts.username or ""),
            password=password,
        )

    def shown(self) -> str:
        """The server for a log line: no user, no password."""
        return f"{self.host}:{self.port} ({self.security})"


@dataclass(frozen=True)
class Attachment:
    name: str
    data: bytes
    kind: str  # MIME type, e.g. "text/html"


def message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    attachments: Sequence[Attachment] = (),
    message_id: str,
    date: datetime,
) -> MIMEMultipart:
    """A plain-text mail with attachments. Built with :class:`email.header.Header`: the
    newer header folding drops a space between encoded words in a long Cyrillic subject."""
    mail = MIMEMultipart()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = Header(subject, "utf-8")  # type: ignore[assignment] # compat32 takes one
    mail["Date"] = format_datetime(date)
    mail["Message-ID"] = message_id
    mail.attach(MIMEText(text, "plain", "utf-8"))
    for item in attachments:
        main, _, sub = item.kind.partition("/")
        part: MIMEBase = (
            MIMEText(item.data.decode("utf-8"), sub, "utf-8")
            if main == "text"
            else MIMEApplication(item.data, sub)
        )
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", item.name))
        mail.attach(part)
    return mail


def new_message_id(sender: str) -> str:
    """A Message-ID in the sender's domain, made before the send is claimed."""
    return make_msgid(idstring="amo-sla", domain=sender.rpartition("@")[2] or None)


def send(server: SmtpServer, mail: Message, *, timeout: float = TIMEOUT_SECONDS) -> None:
    """Hand ``mail`` to ``server`` for its one recipient; :class:`MailError` when it is not
    taken."""
    recipient = str(mail["To"])
    data = _wire(mail, recipient)
    try:
        smtp = _connect(server, timeout)
        try:
            if server.user:
                smtp.login(server.user, server.password)
            limit = smtp.esmtp_features.get("size", "")
            if limit.isdigit() and int(limit) and len(data) > int(limit):
                raise MailError(
                    f"the message is {len(data):,} bytes, more than the {int(limit):,} the "
                    f"server {server.shown()} takes"
                )
            smtp.sendmail(str(mail["From"]), [recipient], data)
        finally:
            _close(smtp)
    except MailError:
        raise
    except smtplib.SMTPRecipientsRefused as error:
        code, answer = error.recipients.get(recipient, (0, b""))
        raise MailError(
            f"the server refused the recipient {recipient}: {_said(code, answer)}"
        ) from None
    except smtplib.SMTPSenderRefused as error:
        if error.smtp_code == 552:
            raise MailError(
                f"the message is too large for the server: {_said(552, error.smtp_error)}"
            ) from None
        said = _said(error.smtp_code, error.smtp_error)
        raise MailError(f"the server refused the sender {error.sender}: {said}") from None
    except smtplib.SMTPDataError as error:
        what = "too large for the server" if error.smtp_code == 552 else "refused"
        raise MailError(
            f"the message was {what}: {_said(error.smtp_code, error.smtp_error)}"
        ) from None
    except smtplib.SMTPAuthenticationError as error:
        raise MailError(
            f"the server {server.shown()} refused the login of {server.user!r}: "
            f"{_said(error.smtp_code, error.smtp_error)}"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise MailError(
            f"the server {server.shown()} offers no login (AUTH); leave the user and password "
            "out of SLA_SMTP_URL if it takes mail without one"
        ) from None
    except ssl.SSLError as error:
        raise MailError(f"TLS with {server.shown()} failed: {error.reason or error}") from None
    except (smtplib.SMTPException, OSError) as error:
        raise MailError(f"cannot reach the mail server {server.shown()}: {error}") from None


def _wire(mail: Message, recipient: str) -> bytes:
    """The mail's bytes; :class:`MailError` for an address the mail cannot carry (non-ASCII,
    a line break): nothing goes out."""
    try:
        for address in (recipient, str(mail["From"])):
            address.encode("ascii")  # SMTP's envelope takes ASCII addresses only
        return mail.as_bytes(policy=WIRE)
    except (ValueError, UnicodeError, email.errors.MessageError) as error:
        raise MailError(f"the mail to {recipient!r} cannot be written: {error}") from None


def _close(smtp: smtplib.SMTP) -> None:
    """End the session; once the server took the mail, its answer to QUIT changes nothing
    (an error there must not send the mail again)."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _connect(server: SmtpServer, timeout: float) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if server.security == "tls":
        return smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
    smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        smtp.ehlo()
        if server.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise MailError(
                    f"the server {server.shown()} offers no STARTTLS; use smtps:// (TLS from "
                    "the start) or, for a relay on the same network, smtp+plain://"
                )
            smtp.starttls(context=context)
            smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def _said(code: int, answer: bytes | str) -> str:
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
    return f"{code} {' '.join(text.split())}".strip()
