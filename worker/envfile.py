"""Writing environment files that every reader takes the same way.

The worker reads a ``.env`` file with python-dotenv (through pydantic-settings); an admin
loads one into a shell with ``set -a; . FILE; set +a``; Docker takes ``--env-file FILE``
literally, quotes included. No single spelling suits all three, so there are two:

* :func:`plain_line` (``KEY=value``, unquoted): the worker and Docker read the same value.
  For the ``.env`` that ``init`` writes.
* :func:`shell_line` (``KEY="value"``): the worker and a POSIX shell read the same value.
  For the sandbox's file, which is meant to be sourced.

A value either spelling would read differently (a quote, ``$``, a backslash, a backquote,
``#``, a line break, surrounding spaces) is refused with :class:`UnsafeValue` instead of
being written in a form one of the readers would change.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
_SHELL_UNSAFE = frozenset('"$`\\\n\r')
_PLAIN_UNSAFE = frozenset("\"'$`\\#\n\r")


class UnsafeValue(ValueError):
    """A value that a shell, python-dotenv or Docker would read differently."""


def _checked_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a variable name: {key!r}")
    return key


def plain_line(key: str, value: str) -> str:
    """``KEY=value`` as python-dotenv and ``docker --env-file`` both read it."""
    if set(value) & _PLAIN_UNSAFE or value != value.strip():
        raise UnsafeValue(
            f"{key}: the value has a quote, `$`, `\\`, `#`, a line break or surrounding "
            "spaces, which the worker and Docker would read differently"
        )
    return f"{_checked_key(key)}={value}"


def shell_line(key: str, value: str, *, export: bool = False) -> str:
    """``KEY="value"`` as python-dotenv and a POSIX shell both read it."""
    if set(value) & _SHELL_UNSAFE:
        raise UnsafeValue(
            f"{key}: the value has a double quote, `$`, `\\`, a backquote or a line break, "
            "which a shell and the worker would read differently"
        )
    return f'{"export " if export else ""}{_checked_key(key)}="{value}"'


def write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write ``text`` to a file only its owner can read (mode 0600): it may hold a token.

    Raises FileExistsError when ``path`` exists and ``replace`` is False."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    descriptor = os.open(path, flags, 0o600)
    os.fchmod(descriptor, 0o600)  # a file replaced would keep its old mode otherwise
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
