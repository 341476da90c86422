"""Which tariffs a lead's tags name, and tags that look like a tariff's spelled otherwise.

Tags are compared as :func:`sla.policy.normalize_tag` leaves them. A tag looks like a
tariff's when it is none of the policy's tags and, with «ё» read as «е» and spaces and
punctuation dropped, it equals a tariff spelling or is a typo away from one: one edit for
a spelling of up to six letters, two for a longer one (shorter spellings only by the first
rule, since any two-letter tag is an edit away from another). A tag with other numbers
than the spelling («Пакет 20 ч» beside «Пакет 2 ч») or one that starts with a negation
(«Не приоритет») says something else and looks like no tariff; of several within reach,
the nearest is named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sla.policy import Policy, Tariff, normalize_tag

SHORTEST_FOR_TYPOS = 4  # letters a spelling needs before an edit away counts as a typo


def tariff_tags(policy: Policy, tags: Iterable[str]) -> list[tuple[Tariff, str]]:
    """The tariffs whose tags the lead carries, in the policy's order (the first wins),
    each with the tag as the lead carries it."""
    carried = {normalize_tag(tag): tag for tag in tags}
    found: list[tuple[Tariff, str]] = []
    for tariff in policy.tariffs:
        hit = next(
            (carried[n] for tag in tariff.tags if (n := normalize_tag(tag)) in carried), None
        )
        if hit is not None:
            found.append((tariff, hit))
    return found


def lookalike_tariff(policy: Policy, tag: str) -> Tariff | None:
    """The tariff ``tag`` looks like a misspelling of, or None (a tag of the policy's own,
    or like none of its tariffs)."""
    if normalize_tag(tag) in _known(policy) or _says_otherwise(tag):
        return None
    squashed = _squashed(tag)
    if not squashed:
        return None
    nearest: tuple[int, int, Tariff] | None = None
    for order, tariff in enumerate(policy.tariffs):
        for spelling in tariff.tags:
            if _digits(spelling) != _digits(tag):
                continue  # another number (of hours, of users) is another thing, not a typo
            squashed_spelling = _squashed(spelling)
            if squashed == squashed_spelling:
                distance = 0
            elif len(squashed_spelling) < SHORTEST_FOR_TYPOS:
                continue
            else:
                limit = 1 if len(squashed_spelling) <= 6 else 2
                distance = _distance(squashed, squashed_spelling, limit)
                if distance > limit:
                    continue
            if nearest is None or (distance, order) < nearest[:2]:
                nearest = (distance, order, tariff)
    return None if nearest is None else nearest[2]


# A tag that starts by negating («не приоритет», «без пакета») names something else.
NEGATIONS = ("не ", "без ", "нет ", "no ", "not ", "non ")


def _says_otherwise(tag: str) -> bool:
    return normalize_tag(tag).startswith(NEGATIONS)


def _digits(tag: str) -> list[str]:
    return re.findall(r"\d+", tag)


def _known(policy: Policy) -> frozenset[str]:
    tags = [tag for tariff in policy.tariffs for tag in tariff.tags]
    tags += [tag for spellings in policy.class_tags.values() for tag in spellings]
    tags += [*policy.emergency_tags, *(quota.tag for quota in policy.quotas)]
    return frozenset(map(normalize_tag, tags))


def _squashed(tag: str) -> str:
    return re.sub(r"[\W_]+", "", normalize_tag(tag)).replace("ё", "е")


def _within(a: str, b: str, limit: int) -> bool:
    """Whether the edit distance (insert, delete, substitute) of ``a`` and ``b`` is at most
    ``limit``."""
    return _distance(a, b, limit) <= limit


def _distance(a: str, b: str, limit: int) -> int:
    """The edit distance of ``a`` and ``b``, or ``limit + 1`` once it is known to exceed it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)
