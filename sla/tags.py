"""Which tariffs a lead's tags name, and tags that look like a tariff's spelled otherwise.

Tags are compared as :func:`sla.policy.normalize_tag` leaves them. A tag looks like a
tariff's when it is none of the policy's tags and, with «ё» read as «е» and spaces and
punctuation dropped, it equals a tariff spelling or is a typo away from one: one edit for
a spelling of up to six letters, two for a longer one (shorter spellings only by the first
rule, since any two-letter tag is an edit away from another).
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
    if normalize_tag(tag) in _known(policy):
        return None
    squashed = _squashed(tag)
    if not squashed:
        return None
    for tariff in policy.tariffs:
        for spelling in map(_squashed, tariff.tags):
            if squashed == spelling:
                return tariff
            if len(spelling) >= SHORTEST_FOR_TYPOS and _within(
                squashed, spelling, 1 if len(spelling) <= 6 else 2
            ):
                return tariff
    return None


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
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            )
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit
