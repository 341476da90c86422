"""A stateful fake amoCRM API v4 for tests, benchmarks and the offline demo.

>>> fake = FakeAmoCRM()
>>> support = fake.add_pipeline("Поддержка", ["Новое", "В работе", "Ждём клиента"])
>>> lead_id = fake.add_lead("Не работает вход", pipeline_id=support.id, tags=["Приоритет"])
>>> client = httpx.Client(base_url=fake.base_url, transport=fake.transport,
...                       headers={"Authorization": f"Bearer {fake.long_lived_token}"})
"""

from amo_client.fake.core import FakeAmoCRM
from amo_client.fake.records import (
    LOST_STATUS_ID,
    ODD_SHAPES,
    RANDOM_FAULT_KINDS,
    WON_STATUS_ID,
    LoggedRequest,
    OddShape,
    PageTurn,
    PipelineRef,
    RandomFaultKind,
    TokenGrant,
    TokenPair,
)
from amo_client.fake.server import FakeServer

__all__ = [
    "LOST_STATUS_ID",
    "ODD_SHAPES",
    "RANDOM_FAULT_KINDS",
    "WON_STATUS_ID",
    "FakeAmoCRM",
    "FakeServer",
    "LoggedRequest",
    "OddShape",
    "PageTurn",
    "PipelineRef",
    "RandomFaultKind",
    "TokenGrant",
    "TokenPair",
]
