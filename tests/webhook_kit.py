"""Pieces of the webhook endpoint's tests: the account's secret and subdomain, a hook as
amoCRM sends it, a trigger that counts, and the endpoint's JSON log lines."""

from __future__ import annotations

import io
import json
from urllib.parse import urlencode

SECRET = "s3cret-" + "x" * 30
SUBDOMAIN = "example"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def amo_hook(subdomain: str = SUBDOMAIN, lead_id: int = 30_000_001) -> str:
    """A status-change hook as amoCRM sends it (API v2 shape, form-encoded)."""
    return urlencode(
        {
            "leads[status][0][id]": str(lead_id),
            "leads[status][0][status_id]": "60000002",
            "leads[status][0][pipeline_id]": "7000001",
            "leads[status][0][old_status_id]": "60000001",
            "leads[status][0][old_pipeline_id]": "7000001",
            "account[id]": "31000001",
            "account[subdomain]": subdomain,
        }
    )


class Triggers:
    """Counts the cycles the endpoint asked for."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    """The JSON log lines written to ``stream``."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def rejections(stream: io.StringIO) -> list[dict[str, object]]:
    """The endpoint's refusals among the log lines."""
    return [line for line in lines(stream) if line["event"] == "webhook_rejected"]
