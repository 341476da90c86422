"""Every error the client raises, in one tree.

::

    AmoError                       anything that went wrong talking to amoCRM
    ├── FatalAmoError              needs an admin before any call can succeed (fatal)
    │   ├── AuthError              the account cannot be used until an admin acts
    │   │   ├── Unauthorized       401: the token is not accepted, even after a refresh
    │   │   └── AuthorizationRequired  the refresh token is revoked or expired
    │   └── PaymentRequired        402: the account's subscription has lapsed (also an ApiError)
    ├── TransportError             no answer: timeouts, refused or dropped connections
    ├── UnexpectedAnswer           a success status with a body of the wrong shape
    ├── CircuitOpen                calls are held back after amoCRM blocked the account
    ├── StopRequested              the caller asked the client to stop while a call waited
    └── ApiError                   amoCRM answered with an error status
        ├── BadRequest             400 without item-level detail
        │   └── ValidationFailed   400 ``validation-errors``: which item, which value, why
        ├── PaymentRequired        (see above)
        ├── Forbidden              403 with a JSON body: the user lacks a right
        ├── AccountBlocked         403 with the gateway's HTML page: blocked for abuse
        ├── NotFound               404
        ├── RateLimited            429 that outlasted every retry
        └── ServerError            5xx that outlasted every retry

Every :class:`FatalAmoError` (and only those) has ``fatal`` set to ``True``: it needs an
admin (a new authorisation, a paid account), so the worker stops on it instead of
retrying every poll; ``except FatalAmoError`` catches exactly these. No message here
ever contains a token, a client secret or an authorization code: errors carry the
method, the path and amoCRM's own detail text, never headers or request bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AmoError(Exception):
    """Base of every client error."""

    fatal: bool = False


class FatalAmoError(AmoError):
    """Base of the errors no retry or later poll can cure: an admin has to act."""

    fatal = True


class TransportError(AmoError):
    """The request got no HTTP answer (after the retries allowed for it)."""


class Unreachable(TransportError):
    """amoCRM gave no answer at all within a short wait (:meth:`AmoClient.probe`)."""


class UnexpectedAnswer(AmoError):
    """A success status whose body is not what the call needs (not JSON, no ``_embedded`` list).

    ``excerpt`` is the start of the body, so a proxy's page or a truncated answer can be told
    apart; it is never taken from the token endpoint, whose answers carry tokens.
    """

    def __init__(
        self, status: int, method: str, path: str, problem: str, excerpt: str = ""
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.problem = problem
        self.excerpt = excerpt
        text = f"{method} {path}: HTTP {status}: {problem}"
        super().__init__(f"{text}; the body starts {excerpt!r}" if excerpt else text)


class StopRequested(AmoError):
    """A stop was requested (:meth:`AmoClient.request_stop`) while a call waited to send."""


class CircuitOpen(AmoError):
    """The client refuses to call amoCRM until ``until`` (monotonic seconds)."""

    def __init__(self, message: str, until: float) -> None:
        super().__init__(message)
        self.until = until


class AuthError(FatalAmoError):
    """The credentials are not accepted and cannot be renewed without an admin."""


class Unauthorized(AuthError):
    """401 that a token refresh did not cure (or a long-lived token that is not accepted)."""


class AuthorizationRequired(AuthError):
    """The refresh token no longer works: the integration has to be authorised again."""


class ApiError(AmoError):
    """amoCRM answered ``status``; ``detail`` is its own explanation, if it gave one."""

    def __init__(self, status: int, method: str, path: str, detail: str = "") -> None:
        self.status = status
        self.method = method
        self.path = path
        self.detail = detail
        text = f"{method} {path}: HTTP {status}"
        super().__init__(f"{text}: {detail}" if detail else text)


class BadRequest(ApiError):
    pass


@dataclass(frozen=True)
class ItemError:
    """One rejected value of a batch item: its index in the request, where, and why."""

    request_index: int | None
    path: str
    code: str
    detail: str

    def __str__(self) -> str:
        where = f"item {self.request_index}" if self.request_index is not None else "request"
        return f"{where}: {self.path}: {self.code} ({self.detail})"


@dataclass(frozen=True)
class InvalidItem:
    """An item of a list answer that does not fit its model, so it was skipped.

    ``kind`` is the model's kind ("lead", "event", ...), ``item_id`` the item's own id when
    the raw item has one, ``problem`` which fields were wrong and why (never their values).
    """

    kind: str
    item_id: int | str | None
    problem: str


class ValidationFailed(BadRequest):
    """400 with ``validation-errors``; ``items`` names every bad item of the batch."""

    def __init__(self, method: str, path: str, items: Sequence[ItemError]) -> None:
        self.items = tuple(items)
        super().__init__(400, method, path, "; ".join(str(item) for item in self.items))

    def bad_indexes(self) -> set[int]:
        return {item.request_index for item in self.items if item.request_index is not None}


class PaymentRequired(ApiError, FatalAmoError):
    """402: the account's subscription has lapsed."""


class Forbidden(ApiError):
    pass


class AccountBlocked(ApiError):
    """The gateway's HTML 403: amoCRM has blocked the account (or address) for abuse."""


class NotFound(ApiError):
    pass


class RateLimited(ApiError):
    pass


class ServerError(ApiError):
    pass
