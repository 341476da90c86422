"""Leads and companies kept deflated: what goes in comes out, equal JSON packs equal (the
cache's "unchanged copy" check compares packed bytes), and a lead shrinks to about a quarter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from amo_client.models import Company
from worker.packed import PackedModels, pack, unpack

LEAD = (
    '{"id":30000931,"name":"Обращение 930","status_id":60000001,"pipeline_id":7000001,'
    '"responsible_user_id":5000006,"created_by":0,"updated_by":0,'
    '"created_at":"2025-10-30T00:27:19Z","updated_at":"2025-10-30T00:27:19Z",'
    '"is_deleted":false,"custom_fields_values":[{"field_id":900008,"values":[{"value":'
    '1761836400}]},{"field_id":900009,"values":[{"value":1762441200}]},{"field_id":900010,'
    '"values":[{"value":1761790663}]},{"field_id":900012,"values":[{"value":true}]},'
    '{"field_id":900013,"values":[{"enum_id":1500008}]}],"_embedded":{"tags":[{"id":100001,'
    '"name":"Микробизнес"},{"id":100006,"name":"Настройка"}],"companies":[{"id":40000195}],'
    '"contacts":[]}}'
).encode()


@given(st.binary(max_size=2_000))
def test_what_is_packed_unpacks_the_same_and_packs_the_same_again(text: bytes) -> None:
    assert unpack(pack(text)) == text
    assert pack(text) == pack(bytes(text))


def test_a_lead_as_amocrm_sends_it_packs_to_about_a_quarter() -> None:
    assert len(pack(LEAD)) <= len(LEAD) // 3


def test_packed_companies_read_back_as_written() -> None:
    companies = PackedModels(Company)
    company = Company(id=7, name="ООО Клиент", custom_fields_values=None)
    companies[7] = company
    companies.put_json(8, '{"id": 8, "name": "ИП Иванов"}')
    assert companies[7] == company
    assert companies[8].name == "ИП Иванов"
    assert set(companies.keys()) - {7} == {8}
    del companies[7]
    assert list(companies) == [8]


def test_packed_companies_pass_to_another_mapping_and_to_json_as_they_are() -> None:
    read = PackedModels(Company, {7: Company(id=7, name="ООО Клиент")})
    cache = PackedModels(Company, {8: Company(id=8, name="ИП Иванов")})
    cache.take(read)
    assert cache[7] == read[7]
    assert sorted(cache) == [7, 8]
    assert dict(read.json_items()) == {7: read[7].model_dump_json(by_alias=True, exclude_none=True)}
