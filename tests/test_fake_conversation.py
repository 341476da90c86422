"""The fake amoCRM's customer messages and groups of users, read through the client."""

from __future__ import annotations

import pytest

from tests.cycle_kit import at, build_world


def test_a_customer_writes_on_every_channel_as_amocrm_records_it() -> None:
    world = build_world(seed=False)
    fake = world.fake
    lead_id = fake.add_lead("Вопрос", pipeline_id=world.support.id, created_at=at(5, 10))
    for channel in ("chat", "mail", "call"):
        fake.customer_writes(lead_id, channel, at=at(5, 11))
    events = list(world.client.iter_events(entity="lead", entity_ids=[lead_id]))
    incoming = [e for e in events if e.type.startswith("incoming_")]
    assert sorted(e.type for e in incoming) == [
        "incoming_call",
        "incoming_chat_message",
        "incoming_mail",
    ]
    assert {e.created_by for e in incoming} == {0}
    chat = next(e for e in incoming if e.type == "incoming_chat_message")
    assert chat.talk_id is not None  # a chat message belongs to a talk, as amoCRM's do
    with pytest.raises(ValueError, match="channel 'fax'"):
        fake.customer_writes(lead_id, "fax")


def test_a_customer_message_is_filed_where_the_account_files_replies() -> None:
    world = build_world(seed=False)
    fake = world.fake
    lead_id = fake.add_lead("Вопрос", pipeline_id=world.support.id, created_at=at(5, 10))
    contact = fake.add_contact("Клиент")
    fake.link_contact(lead_id, contact)
    fake.replies_filed_on = "contact"
    fake.customer_writes(lead_id, "chat", talk_about_lead=True)
    events = list(world.client.iter_events(entity="contact", entity_ids=[contact]))
    assert [e.type for e in events] == ["incoming_chat_message"]
    assert events[0].talk_id is not None
    assert world.client.talk_lead_id(events[0].talk_id) == lead_id


def test_users_belong_to_groups_the_account_lists() -> None:
    world = build_world(seed=False)
    fake = world.fake
    support = fake.add_user_group("Техподдержка")
    maria = fake.add_user("Мария Козлова", group_id=support)
    groups = {group.id: group.name for group in world.client.user_groups()}
    assert groups == {0: "Отдел продаж", support: "Техподдержка"}
    users = {user.id: user.rights.group_id for user in world.client.iter_users()}
    assert users[maria] == support
    assert users[world.agents[0]] is None
    with pytest.raises(KeyError):
        fake.add_user("Никто", group_id=999)
