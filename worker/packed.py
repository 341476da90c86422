"""amoCRM's JSON kept deflated in memory: the caches hold every open request (and every
company of them) between cycles, and parse one only when it is used."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, KeysView, MutableMapping
from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

# What amoCRM's JSON of a lead or a company repeats (its keys, its usual words), given to
# zlib as the dictionary to compress against: a lead's JSON shrinks to about a quarter.
_JSON_WORDS = (
    '{"id":,"name":"Обращение ","status_id":,"pipeline_id":,"responsible_user_id":,'
    '"created_by":0,"updated_by":0,"created_at":"2025-10-30T00:00:00Z",'
    '"updated_at":"2026-10-30T00:00:00Z","closed_at":"2026-","is_deleted":false,'
    '"custom_fields_values":[{"field_id":,"field_name":"","field_type":"text",'
    '"values":[{"value":17},{"field_id":,"values":[{"value":true}]},{"field_id":,'
    '"values":[{"enum_id":}]},"_embedded":{"tags":[{"id":,"name":""}],"companies":[{"id":}],'
    '"contacts":[{"id":}]}}'
).encode()


def pack(text: bytes) -> bytes:
    """``text`` deflated against the words amoCRM's JSON repeats; equal texts pack equal."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _JSON_WORDS)
    return packer.compress(text) + packer.flush()


def unpack(packed: bytes) -> bytes:
    unpacker = zlib.decompressobj(-15, _JSON_WORDS)
    return unpacker.decompress(packed) + unpacker.flush()


class PackedModels(MutableMapping[int, M]):
    """Models by id, each kept as its packed JSON and parsed when read."""

    def __init__(self, model: type[M], items: dict[int, M] | None = None) -> None:
        self._model = model
        self._packed: dict[int, bytes] = {}
        self.update(items or {})

    def put_json(self, key: int, text: str | bytes) -> None:
        """Keep a model given as its JSON (as the store holds it) without parsing it."""
        self._packed[key] = pack(text.encode() if isinstance(text, str) else text)

    def take(self, other: PackedModels[M]) -> None:
        """Hold ``other``'s models as they are packed (no parsing)."""
        self._packed.update(other._packed)

    def json_items(self) -> Iterator[tuple[int, str]]:
        """Each model's JSON, by id (no parsing)."""
        for key, packed in self._packed.items():
            yield key, unpack(packed).decode()

    def __getitem__(self, key: int) -> M:
        return self._model.model_validate_json(unpack(self._packed[key]))

    def __setitem__(self, key: int, value: M) -> None:
        self._packed[key] = pack(value.model_dump_json(by_alias=True, exclude_none=True).encode())

    def __delitem__(self, key: int) -> None:
        del self._packed[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def __contains__(self, key: object) -> bool:
        return key in self._packed

    def keys(self) -> KeysView[int]:
        return self._packed.keys()
