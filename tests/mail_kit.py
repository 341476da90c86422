"""A real SMTP server on localhost (aiosmtpd) that keeps what it takes, for the report mail.

It can refuse a recipient a number of times, advertise a SIZE limit, insist on STARTTLS with a
certificate made for the test (trusted through ``SSL_CERT_FILE``) and on a login, and run a
hook when a message's data has arrived, before it answers (to kill the sender right then).
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Mailbox:
    """What the server took and refused; its ``port``."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    refusals: dict[str, int] = field(default_factory=dict)  # address: times still to refuse
    refused: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    on_data: Callable[[EmailMessage], None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    # aiosmtpd's handler hooks ---------------------------------------------------------------
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self._lock:
            if self.refusals.get(address, 0) > 0:
                self.refusals[address] -= 1
                self.refused.append(address)
                return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        taken = message_from_bytes(envelope.content, policy=default)
        assert isinstance(taken, EmailMessage)
        with self._lock:
            self.messages.append(taken)
        if self.on_data is not None:
            self.on_data(taken)
        return "250 2.0.0 Message accepted"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and its key, made with the openssl command."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    assert openssl is not None, "the TLS test needs the openssl command"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def mail_server(
    mailbox: Mailbox | None = None,
    *,
    size_limit: int | None = None,
    tls: tuple[Path, Path] | None = None,
    implicit_tls: bool = False,
    login: tuple[str, str] | None = None,
) -> Iterator[Mailbox]:
    """Serve ``mailbox`` on a loopback port until the block ends."""
    box = mailbox or Mailbox()
    options: dict[str, Any] = {}
    server_options: dict[str, Any] = {}
    if size_limit is not None:
        options["data_size_limit"] = size_limit
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        if implicit_tls:  # TLS from the first byte (smtps), no STARTTLS
            server_options["ssl_context"] = context
        else:
            options |= {"tls_context": context, "require_starttls": True}
    if login is not None:

        def check(server: Any, session: Any, envelope: Any, _mechanism: str, data: Any) -> Any:
            if (
                isinstance(data, LoginPassword)
                and (
                    data.login.decode(),
                    data.password.decode(),
                )
                == login
            ):
                box.logins.append(data.login.decode())
                return AuthResult(success=True)
            return AuthResult(success=False, handled=False)

        options |= {"authenticator": check, "auth_required": True}
        if implicit_tls:  # aiosmtpd counts only STARTTLS as TLS for AUTH
            options["auth_require_tls"] = False
    box.port = free_port()
    controller = Controller(box, hostname="localhost", port=box.port, **server_options, **options)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
