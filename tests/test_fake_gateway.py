"""The fake amoCRM's gateway: authentication, OAuth, rate limit, injected faults, request log."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from amo_client.fake import FakeAmoCRM, PipelineRef, TokenGrant
from tests.client_kit import START, FakeClock, make_fake

pytestmark = pytest.mark.fake_options(max_requests_per_second=None)  # raw clients never wait


def client(fake: FakeAmoCRM, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=fake.base_url, transport=fake.transport, headers=headers)


def oauth(http: httpx.Client, fake: FakeAmoCRM, **grant: str) -> httpx.Response:
    body = {"client_id": fake.client_id, "client_secret": fake.client_secret, **grant}
    return http.post("/oauth2/access_token", json={"redirect_uri": fake.redirect_uri, **body})


# ---------------------------------------------------------------- rate limit


def test_the_eighth_request_within_a_second_gets_an_html_429(clock: FakeClock) -> None:
    fake = make_fake(clock)
    with client(fake, fake.long_lived_token) as http:
        statuses = []
        for _ in range(8):
            clock.mono += 0.125
            statuses.append(http.get("/api/v4/account"))
        assert [r.status_code for r in statuses] == [200] * 7 + [429]
        limited = statuses[-1]
        assert "retry-after" not in limited.headers
        assert limited.headers["content-type"] == "text/html"
        assert limited.text.startswith("<html>")
        assert "429 Too Many Requests" in limited.text
        assert fake.rate_limited_total == 1
        clock.mono += 0.125  # the first request (at +0.125) is now a second old
        assert http.get("/api/v4/account").status_code == 200
        assert http.get("/api/v4/account").status_code == 429
        clock.mono += 1.0
        assert http.get("/api/v4/account").status_code == 200
        assert fake.rate_limited_total == 2
        assert fake.status_counts == {200: 9, 429: 2}


def test_rejected_requests_do_not_use_up_the_window(clock: FakeClock) -> None:
    fake = make_fake(clock, max_requests_per_second=2)
    with client(fake, fake.long_lived_token) as http:
        codes = [http.get("/api/v4/account").status_code for _ in range(5)]
        assert codes == [200, 200, 429, 429, 429]
        clock.mono += 1.0
        assert [http.get("/api/v4/account").status_code for _ in range(2)] == [200, 200]


def test_too_many_429s_get_the_account_blocked(clock: FakeClock) -> None:
    fake = make_fake(clock, max_requests_per_second=1, block_after_rate_limited=3)
    with client(fake, fake.long_lived_token) as http:
        codes = [http.get("/api/v4/account").status_code for _ in range(5)]
        assert codes == [200, 429, 429, 429, 403]
        assert fake.blocked
        clock.mono += 10
        blocked = http.get("/api/v4/account")
        assert blocked.status_code == 403
        assert blocked.headers["content-type"] == "text/html"
        fake.block_account(False)
        assert http.get("/api/v4/account").status_code == 200


def test_rate_limit_is_per_account_across_threads(clock: FakeClock) -> None:
    fake = make_fake(clock, max_requests_per_second=7)
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with client(fake, fake.long_lived_token) as http:
            for _ in range(5):
                code = http.get("/api/v4/account").status_code
                with lock:
                    results.append(code)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(200) == 7
    assert results.count(429) == 13
    assert fake.requests_total == 20


# ---------------------------------------------------------------- authentication


def test_requests_without_a_valid_token_get_401_json(fake: FakeAmoCRM) -> None:
    with client(fake) as anonymous:
        response = anonymous.get("/api/v4/leads")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 401
    with client(fake, "not-a-token") as wrong:
        assert wrong.get("/api/v4/leads").status_code == 401


def test_access_tokens_expire(clock: FakeClock) -> None:
    fake = make_fake(clock, max_requests_per_second=None, access_token_lifetime=3600)
    pair = fake.issue_token_pair()
    assert pair.expires_in == 3600
    with client(fake, pair.access_token) as http:
        assert http.get("/api/v4/account").status_code == 200
        clock.wall += 3600
        assert http.get("/api/v4/account").status_code == 401
    fake.expire_access_tokens()
    with client(fake, fake.long_lived_token) as http:
        assert http.get("/api/v4/account").status_code == 401


def test_refresh_tokens_are_single_use_along_a_chain(fake: FakeAmoCRM) -> None:
    with client(fake) as anonymous:
        code = fake.issue_authorization_code()
        first = oauth(anonymous, fake, grant_type="authorization_code", code=code)
        assert first.status_code == 200
        pair = first.json()
        assert pair["token_type"] == "Bearer"
        assert pair["expires_in"] == 86400
        spent_code = oauth(anonymous, fake, grant_type="authorization_code", code=code)
        assert spent_code.status_code == 400
        assert spent_code.json()["hint"] == "Authorization code has been revoked"

        chain = [pair]
        for _ in range(3):
            refreshed = oauth(
                anonymous,
                fake,
                grant_type="refresh_token",
                refresh_token=chain[-1]["refresh_token"],
            )
            assert refreshed.status_code == 200, refreshed.text
            chain.append(refreshed.json())
        assert len({link["refresh_token"] for link in chain}) == 4

        reused = oauth(
            anonymous, fake, grant_type="refresh_token", refresh_token=chain[1]["refresh_token"]
        )
        assert reused.status_code == 400
        assert reused.json()["hint"] == "Token has been revoked"
        assert reused.json()["type"] == "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
        assert fake.refresh_reuse_attempts == 1

    for old in chain[:-1]:
        with client(fake, old["access_token"]) as http:
            assert http.get("/api/v4/account").status_code == 401
    with client(fake, chain[-1]["access_token"]) as http:
        assert http.get("/api/v4/account").status_code == 200
    assert [grant.issued for grant in fake.token_grants] == [True, False, True, True, True, False]
    assert fake.token_grants[-1] == TokenGrant(
        "refresh_token", issued=False, hint="Token has been revoked"
    )


def test_old_access_token_can_be_kept_alive_until_expiry(clock: FakeClock) -> None:
    fake = make_fake(clock, max_requests_per_second=None, revoke_access_on_refresh=False)
    pair = fake.issue_token_pair()
    with client(fake) as anonymous:
        refreshed = oauth(
            anonymous, fake, grant_type="refresh_token", refresh_token=pair.refresh_token
        )
        assert refreshed.status_code == 200
    with client(fake, pair.access_token) as http:
        assert http.get("/api/v4/account").status_code == 200


def test_oauth_refusals(clock: FakeClock) -> None:
    fake = make_fake(clock, max_requests_per_second=None, revoked_refresh_status=401)
    pair = fake.issue_token_pair()
    with client(fake) as anonymous:
        wrong_secret = anonymous.post(
            "/oauth2/access_token",
            json={
                "client_id": fake.client_id,
                "client_secret": "nope",
                "grant_type": "refresh_token",
                "refresh_token": pair.refresh_token,
            },
        )
        assert wrong_secret.status_code == 401
        unknown = oauth(anonymous, fake, grant_type="refresh_token", refresh_token="garbage")
        assert unknown.json()["hint"] == "Cannot decrypt the refresh token"
        code = fake.issue_authorization_code()
        clock.wall += 20 * 60
        late = oauth(anonymous, fake, grant_type="authorization_code", code=code)
        assert late.json()["hint"] == "Authorization code has expired"
        form = anonymous.post(
            "/oauth2/access_token",
            data={
                "client_id": fake.client_id,
                "client_secret": fake.client_secret,
                "grant_type": "refresh_token",
                "refresh_token": pair.refresh_token,
            },
        )
        assert form.status_code == 200
        fake.revoke_tokens()
        revoked = oauth(
            anonymous, fake, grant_type="refresh_token", refresh_token=form.json()["refresh_token"]
        )
        assert revoked.status_code == 401
        assert revoked.json()["hint"] == "Token has been revoked"
    with client(fake, fake.long_lived_token) as http:
        assert http.get("/api/v4/account").status_code == 401


# ---------------------------------------------------------------- faults


def test_fail_next_answers_with_amocrm_error_pages(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    fake.fail_next(2, status=503, path="/api/v4/leads")
    first = api.get("/api/v4/leads")
    assert first.status_code == 503
    assert first.headers["content-type"] == "text/html"
    assert api.get("/api/v4/account").status_code == 200
    assert api.get("/api/v4/leads").status_code == 503
    assert api.get("/api/v4/leads").status_code == 204
    fake.fail_next(status=402)
    assert api.get("/api/v4/account").json()["status"] == 402
    fake.fail_next(
        status=500, body={"title": "oops"}, method="PATCH", path=re.compile(r"^/api/v4/")
    )
    assert api.get("/api/v4/account").status_code == 200
    broken = api.patch("/api/v4/leads", json=[])
    assert (broken.status_code, broken.json()) == (500, {"title": "oops"})


@pytest.mark.parametrize("api", ["transport"], indirect=True)
def test_timeouts_and_connection_errors_are_raised_by_the_transport(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    fake.timeout_next(path="/api/v4/tasks")
    task = {"text": "t", "complete_till": int(START), "entity_id": lead_id, "entity_type": "leads"}
    with pytest.raises(httpx.ReadTimeout):
        api.post("/api/v4/tasks", json=[task])
    assert fake.tasks == []
    fake.timeout_next(path="/api/v4/tasks", after_processing=True)
    with pytest.raises(httpx.ReadTimeout):
        api.post("/api/v4/tasks", json=[task])
    assert len(fake.tasks) == 1
    fake.disconnect_next()
    with pytest.raises(httpx.ConnectError):
        api.get("/api/v4/account")
    assert api.get("/api/v4/account").status_code == 200
    log = fake.request_log
    assert [(entry.status, entry.error) for entry in log] == [
        (None, "ReadTimeout"),
        (None, "ReadTimeout"),
        (None, "ConnectError"),
        (200, None),
    ]
    fake.timeout_next(5)
    fake.clear_faults()
    assert api.get("/api/v4/account").status_code == 200


def test_the_request_log_records_method_path_query_and_status(
    fake: FakeAmoCRM, api: httpx.Client, support: PipelineRef
) -> None:
    fake.add_lead("Обращение", pipeline_id=support.id)
    api.get("/api/v4/leads", params={"filter[pipeline_id]": support.id, "limit": 250})
    api.patch("/api/v4/leads", json=[{"id": 1}])
    first, second = fake.request_log
    assert (first.method, first.path, first.status) == ("GET", "/api/v4/leads", 200)
    assert first.query == f"filter[pipeline_id]={support.id}&limit=250"
    assert (second.method, second.status, second.body) == ("PATCH", 400, [{"id": 1}])
    assert fake.requests_total == 2
    fake.reset_request_log()
    assert fake.request_log == []
    assert fake.requests_total == 0


# ---------------------------------------------------------------- concurrency, HTTP, volume


def test_concurrent_writers_all_land(fake: FakeAmoCRM, support: PipelineRef) -> None:
    field_id = fake.add_custom_field("SLA: осталось, мин", "numeric")
    lead_ids = [fake.add_lead(f"Обращение {n}", pipeline_id=support.id) for n in range(40)]

    def writer(chunk: list[int]) -> None:
        with client(fake, fake.long_lived_token) as http:
            for lead_id in chunk:
                values = [{"field_id": field_id, "values": [{"value": lead_id % 1000}]}]
                response = http.patch(
                    "/api/v4/leads", json=[{"id": lead_id, "custom_fields_values": values}]
                )
                assert response.status_code == 200

    threads = [threading.Thread(target=writer, args=(lead_ids[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(
        fake.field_value(lead_id, field_id) == [{"value": str(lead_id % 1000)}]
        for lead_id in lead_ids
    )
    assert fake.requests_total == 40


def test_serve_answers_plain_http(fake: FakeAmoCRM, support: PipelineRef) -> None:
    lead_id = fake.add_lead("Обращение", pipeline_id=support.id)
    with fake.serve() as server:
        response = httpx.get(
            f"{server.url}/api/v4/leads/{lead_id}",
            headers={"Authorization": f"Bearer {fake.long_lived_token}"},
        )
        assert response.status_code == 200
        assert response.json()["id"] == lead_id
        assert httpx.get(f"{server.url}/api/v4/leads/1").status_code == 401


def test_ten_thousand_leads_page_through_quickly(fake: FakeAmoCRM, api: httpx.Client) -> None:
    support = fake.add_pipeline("Поддержка", ["Новое"])
    field_id = fake.add_custom_field("SLA: статус", "select", enums=["В срок", "Просрочено"])
    for n in range(10_000):
        fake.add_lead(
            f"Обращение {n}",
            pipeline_id=support.id,
            tags=["Стандарт"],
            custom_fields={field_id: "В срок"},
            created_at=START + n,
            record_added_event=False,
        )
    started = time.perf_counter()
    seen = 0
    url: str | None = (
        f"/api/v4/leads?filter[pipeline_id]={support.id}&order[updated_at]=asc&limit=250"
    )
    while url is not None:
        body = api.get(url).json()
        seen += len(body["_embedded"]["leads"])
        url = body["_links"].get("next", {}).get("href")
    elapsed = time.perf_counter() - started
    assert seen == 10_000
    assert elapsed < 10.0, f"paging 10,000 leads took {elapsed:.1f}s"
