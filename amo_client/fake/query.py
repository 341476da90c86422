"""Query strings the way amoCRM (PHP) reads them: ``filter[statuses][0][status_id]=142``.

Brackets nest; ``[]`` appends to a list; a plain repeated key keeps its last value.
A filter that takes several values accepts an array (``filter[id][]=1&filter[id][]=2``,
``filter[id][0]=1``) as well as one comma-separated string (``filter[id]=1,2``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeAlias

QueryNode: TypeAlias = "str | list[QueryNode] | dict[str, QueryNode]"

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class BadQuery(ValueError):
    """A query parameter that cannot be read; answered with HTTP 400."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


def _segments(key: str) -> list[str]:
    head, bracket, _ = key.partition("[")
    if not bracket:
        return [key]
    rest = key[len(head) :]
    parts = _SEGMENT.findall(rest)
    if "".join(f"[{part}]" for part in parts) != rest:
        return [key]
    return [head, *parts]


def parse_query(pairs: Iterable[tuple[str, str]]) -> dict[str, QueryNode]:
    """Nest ``(key, value)`` pairs into dicts and lists by their brackets."""
    root: dict[str, QueryNode] = {}
    for key, value in pairs:
        _insert(root, _segments(key), value)
    return root


def _insert(root: dict[str, QueryNode], segments: list[str], value: str) -> None:
    container: dict[str, QueryNode] | list[QueryNode] = root
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if isinstance(container, list):
            if last:
                container.append(value)
                return
            child: dict[str, QueryNode] | list[QueryNode] = (
                [] if segments[position + 1] == "" else {}
            )
            container.append(child)
            container = child
            continue
        if last:
            container[segment] = value
            return
        wants_list = segments[position + 1] == ""
        existing = container.get(segment)
        if isinstance(existing, list if wants_list else dict):
            container = existing
        else:
            fresh: dict[str, QueryNode] | list[QueryNode] = [] if wants_list else {}
            container[segment] = fresh
            container = fresh


def lookup(root: dict[str, QueryNode], *path: str) -> QueryNode | None:
    node: QueryNode | None = root
    for segment in path:
        if not isinstance(node, dict):
            return None
        node = node.get(segment)
    return node


def as_strings(node: QueryNode | None) -> list[str]:
    """All scalar values below ``node``, comma-separated strings split apart."""
    if node is None:
        return []
    if isinstance(node, str):
        return [part.strip() for part in node.split(",") if part.strip()]
    children = node if isinstance(node, list) else [node[key] for key in _ordered(node)]
    out: list[str] = []
    for child in children:
        out.extend(as_strings(child))
    return out


def as_ints(node: QueryNode | None, name: str) -> list[int]:
    out: list[int] = []
    for text in as_strings(node):
        try:
            out.append(int(text))
        except ValueError:
            raise BadQuery(name, f"{text!r} is not an integer") from None
    return out


def as_int(node: QueryNode | None, name: str) -> int | None:
    if node is None:
        return None
    if not isinstance(node, str):
        raise BadQuery(name, "expected one value")
    try:
        return int(node.strip())
    except ValueError:
        raise BadQuery(name, f"{node!r} is not an integer") from None


def as_range(node: QueryNode | None, name: str) -> tuple[int | None, int | None]:
    """``x`` (from x on) or ``x[from]`` / ``x[to]``, both ends inclusive."""
    if node is None:
        return None, None
    if isinstance(node, str):
        return as_int(node, name), None
    if isinstance(node, list):
        raise BadQuery(name, "expected from/to")
    return as_int(node.get("from"), f"{name}[from]"), as_int(node.get("to"), f"{name}[to]")


def children(node: QueryNode | None) -> list[QueryNode]:
    """The items of an array parameter, in index order."""
    if node is None or isinstance(node, str):
        return []
    if isinstance(node, list):
        return list(node)
    return [node[key] for key in _ordered(node)]


def _ordered(node: dict[str, QueryNode]) -> list[str]:
    return sorted(node, key=lambda key: (0, int(key), key) if key.isdigit() else (1, 0, key))
