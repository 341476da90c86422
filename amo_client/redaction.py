"""The secrets worth masking in logs, kept bounded however often the tokens rotate.

A :class:`SecretRegistry` holds two kinds of values. Fixed ones (a client secret, a
long-lived token, an authorization code) stay for the life of the process. Token pairs
rotate: every OAuth refresh brings a new one, so only the latest ``keep_pairs`` are kept.
A spent token still deserves masking for a while (a request or an error line written
just before the refresh may still be on its way to the log), but not forever.

The registry answers :meth:`SecretRegistry.forms` (each value as written, JSON-escaped and
URL-encoded, longest first) and :meth:`SecretRegistry.redact`; a logging pipeline reads
one of those for every line. :class:`amo_client.auth.OAuthTokens` adds every pair it
loads or stores when given a registry.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import TYPE_CHECKING, Final
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from amo_client.auth import TokenPair

MASK: Final = "***"
KEEP_PAIRS: Final = 4
MIN_SECRET_LENGTH: Final = 6


class SecretRegistry:
    """Fixed secrets plus the latest ``keep_pairs`` token pairs. Thread-safe.

    Values shorter than ``min_length`` are ignored: masking every short word would
    destroy the logs, and real secrets are far longer.
    """

    def __init__(self, *, keep_pairs: int = KEEP_PAIRS, min_length: int = MIN_SECRET_LENGTH):
        if keep_pairs < 1:
            raise ValueError("keep_pairs must be at least 1")
        self._min_length = min_length
        self._lock = threading.Lock()
        self._fixed: set[str] = set()
        self._pairs: deque[tuple[str, str]] = deque(maxlen=keep_pairs)
        self._values: frozenset[str] = frozenset()
        self._forms: tuple[str, ...] = ()

    def add(self, value: str | None) -> None:
        """Mask ``value`` for the life of the registry."""
        if value is None or len(value) < self._min_length:
            return
        with self._lock:
            if value not in self._fixed:
                self._fixed.add(value)
                self._rebuild()

    def add_pair(self, pair: TokenPair) -> None:
        """Mask ``pair`` as the newest token pair; the oldest beyond ``keep_pairs`` is dropped."""
        entry = (pair.access_token, pair.refresh_token)
        with self._lock:
            if self._pairs and self._pairs[-1] == entry:
                return
            if entry in self._pairs:
                self._pairs.remove(entry)
            self._pairs.append(entry)
            self._rebuild()

    def values(self) -> frozenset[str]:
        """Every value masked now."""
        return self._values

    def forms(self) -> tuple[str, ...]:
        """Every value as written, JSON-escaped and URL-encoded; longest first."""
        return self._forms

    def redact(self, text: str, mask: str = MASK) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, mask)
        return text

    def _rebuild(self) -> None:
        values = frozenset(self._fixed).union(
            value for pair in self._pairs for value in pair if len(value) >= self._min_length
        )
        forms = {
            form
            for value in values
            for form in (value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value))
        }
        # Longest first, so a secret containing another one is masked whole.
        self._forms = tuple(sorted(forms, key=len, reverse=True))
        self._values = values
