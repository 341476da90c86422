"""The worker's error policy, in one place.

* **Fatal**: only an admin can fix it (a refused token, an unpaid account, a configuration
  that no longer matches the account, a state file from a newer version). The service
  stops and exits 2; a command exits 2. These are :class:`FatalError` and the client's
  :class:`amo_client.errors.FatalAmoError`.
* **Per lead**: one lead's data cannot be used. The cycle logs ``lead_invalid`` naming the
  lead and the problem, skips that lead and goes on with the rest. Any exception raised
  while one lead is computed is treated so.
* **Anything else** fails the cycle, which the service tries again at the next poll.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from amo_client.errors import FatalAmoError

# What every command's exit code means; the README's table is this mapping
# (tests/test_cycle_cli.py keeps the two equal).
EXIT_CODES: Mapping[int, str] = MappingProxyType(
    {
        0: "done; for `check`, `health` and `webhook status`: everything is in place; `run`: "
        "stopped by SIGTERM or SIGINT",
        1: "a check found problems (`check`, `health`, `webhook status`), or the command failed "
        "in a way a new try may fix: amoCRM unreachable or answering errors, a lead or company "
        "that does not exist",
        2: "only the admin can fix it: a bad variable or policy file (`config_invalid`), a "
        "refused token, a configuration that does not match the account, a state directory "
        "that cannot be used; also a command line that cannot be parsed",
    }
)


def exit_code_table() -> str:
    """The README's table of exit codes."""
    rows = "\n".join(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items())
    return f"| exit code | meaning |\n|---|---|\n{rows}\n"


class FatalError(Exception):
    """Only an admin can fix this: the worker stops (exit 2) instead of retrying."""


def is_fatal(error: BaseException) -> bool:
    """Whether ``error`` stops the worker."""
    return isinstance(error, FatalError | FatalAmoError)


def describe(error: BaseException) -> str:
    """An error for a log line: its type, and its message when it has one."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
