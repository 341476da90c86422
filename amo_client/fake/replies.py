"""Response bodies in the shapes amoCRM sends: HAL JSON, problem JSON, nginx HTML pages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amo_client.fake.records import OddShape

HAL_JSON = "application/hal+json"
PROBLEM_JSON = "application/problem+json"
JSON = "application/json"
HTML = "text/html"

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def reason(status: int) -> str:
    return _REASONS.get(status, "Error")


@dataclass(frozen=True)
class Reply:
    """One HTTP answer of the fake, before it becomes an ``httpx.Response``."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def encode(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def hal(payload: Any, status: int = 200) -> Reply:
    return Reply(status, encode(payload), HAL_JSON)


def no_content() -> Reply:
    """amoCRM's answer to an empty list or a missing entity: 204 without a body."""
    return Reply(204)


def problem(status: int, detail: str, **extra: Any) -> Reply:
    body = {
        **extra,
        "title": reason(status),
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": detail,
    }
    return Reply(status, encode(body), PROBLEM_JSON)


@dataclass(frozen=True)
class ItemError:
    """One entry of ``validation-errors[].errors[]``."""

    code: str
    path: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "detail": self.detail}


def validation_failed(errors_by_request: Sequence[tuple[str, Sequence[ItemError]]]) -> Reply:
    """400 naming each rejected item by ``request_id`` and each bad value by its path."""
    return problem(
        400,
        "Request validation failed",
        **{
            "validation-errors": [
                {"request_id": request_id, "errors": [error.as_json() for error in errors]}
                for request_id, errors in errors_by_request
            ]
        },
    )


def unauthorized() -> Reply:
    return problem(401, "Неверный логин или пароль")


def oauth_problem(status: int, hint: str) -> Reply:
    body = {
        "hint": hint,
        "title": "Некорректный запрос",
        "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
        "status": status,
        "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
    }
    return Reply(status, encode(body), PROBLEM_JSON)


def nginx_page(status: int) -> Reply:
    """The gateway's own HTML page (429, 403 of a blocked account, 5xx): no JSON, no Retry-After."""
    title = f"{status} {reason(status)}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Reply(status, page.encode("utf-8"), HTML)


def default_error(status: int) -> Reply:
    """The body amoCRM's stack sends for ``status`` when nothing more specific is known."""
    if status in {403, 429} or status >= 500:
        return nginx_page(status)
    if status == 401:
        return unauthorized()
    return problem(status, reason(status))


_MAINTENANCE_PAGE = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>amoCRM</title></head>\n'
    "<body><h1>Ведутся технические работы</h1><p>Скоро всё заработает.</p></body></html>\n"
)


def odd_reply(shape: OddShape, served: Reply, key: str) -> Reply:
    """``served`` turned into one of the 2xx answers a client does not expect.

    ``key`` names the list in ``_embedded`` (``leads``, ``events``...).
    """
    fixed = {
        "no_content": Reply(204),
        "html": Reply(200, _MAINTENANCE_PAGE.encode("utf-8"), HTML),
        "empty_object": Reply(200, b"{}", HAL_JSON),
        "empty_embedded": Reply(200, encode({"_embedded": {}}), HAL_JSON),
    }
    if shape in fixed:
        return fixed[shape]
    if shape == "truncated":
        body = served.body or encode({"_embedded": {}})
        status = served.status if served.body else 200
        return Reply(status, body[: len(body) // 2], served.content_type or HAL_JSON)
    payload = _decoded(served.body)
    embedded = payload.get("_embedded") if isinstance(payload, dict) else None
    embedded = embedded if isinstance(embedded, dict) else {}
    if shape == "null_list":
        return Reply(200, encode({"_embedded": {key: None}}), HAL_JSON)
    items = embedded.get(key)
    return Reply(200, encode(items if isinstance(items, list) else []), HAL_JSON)


def _decoded(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
