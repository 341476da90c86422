from dataclasses import replace
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sla.policy import Policy, default_policy, load_policy
from sla.tags import _within, lookalike_tariff, tariff_tags

POLICY = default_policy()  # tariffs «Приоритет» and «По факту»


@pytest.mark.parametrize(
    ("tag", "looks_like"),
    [
        ("Приоритет", None),  # the tariff's own tag
        ("  приоритет ", None),  # case and spaces are the same tag already
        ("Нестандартное", None),  # a class tag
        ("Приорітет", "Приоритет"),  # one letter off
        ("Приоритеет", "Приоритет"),  # one letter too many
        ("Приорите", "Приоритет"),  # one letter short
        ("Проиритет", "Приоритет"),  # two letters swapped: two edits, a long spelling
        ("ПоФакту", "По факту"),  # no space
        ("по-факту", "По факту"),  # punctuation
        ("По фатку", "По факту"),  # two letters swapped: two edits, seven letters
        ("Факт", None),  # three letters short
        ("Приор", None),
        ("Приоритетный клиент", None),
        ("VIP", None),
        ("", None),
    ],
)
def test_a_tag_looks_like_a_tariff_only_when_a_typo_away(tag: str, looks_like: str | None) -> None:
    found = lookalike_tariff(POLICY, tag)
    assert (found.name if found else None) == looks_like


def test_e_and_yo_are_one_letter_for_lookalikes() -> None:
    full = replace(POLICY.tariffs[0], name="Всё включено", tags=("Всё включено",))
    policy = replace(POLICY, tariffs=(full, *POLICY.tariffs[1:]))
    found = lookalike_tariff(policy, "Все включено")
    assert found is not None
    assert found.name == "Всё включено"


def test_tariffs_a_lead_carries_come_in_the_policys_order() -> None:
    found = tariff_tags(POLICY, ["по факту", "ПРИОРИТЕТ", "Доработка"])
    assert [(tariff.name, tag) for tariff, tag in found] == [
        ("Приоритет", "ПРИОРИТЕТ"),
        ("По факту", "по факту"),
    ]
    assert tariff_tags(POLICY, ["Доработка"]) == []


def _distance(a: str, b: str) -> int:
    """Brute force: the edit distance by the textbook recursion, memoised."""
    table = {}
    for i in range(len(a) + 1):
        for j in range(len(b) + 1):
            if i == 0 or j == 0:
                table[i, j] = i + j
            else:
                table[i, j] = min(
                    table[i - 1, j] + 1,
                    table[i, j - 1] + 1,
                    table[i - 1, j - 1] + (a[i - 1] != b[j - 1]),
                )
    return table[len(a), len(b)]


@given(st.text("абв", max_size=7), st.text("абв", max_size=7), st.integers(0, 3))
def test_the_bounded_edit_distance_agrees_with_the_textbook_one(a: str, b: str, limit: int) -> None:
    assert _within(a, b, limit) == (_distance(a, b) <= limit)


@given(st.sampled_from(["Приоритет", "По факту"]), st.data())
def test_one_letter_changed_in_a_tariff_tag_looks_like_that_tariff(
    spelling: str, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(spelling) - 1))
    letter = data.draw(st.sampled_from("абвгдеёжзийклмнопрстуфхцчшщъыьэюя"))
    tag = spelling[:index] + letter + spelling[index + 1 :]
    found = lookalike_tariff(POLICY, tag)
    if " ".join(tag.split()).casefold() == spelling.casefold():
        assert found is None
    else:
        assert found is not None
        assert found.name == spelling


HOUR_PACKAGES = load_policy(
    (resources.files("sla.presets") / "hour_packages.toml").read_text(encoding="utf-8")
)  # tariffs «Пакет 10 ч», «Пакет 5 ч», «Пакет 2 ч»


@pytest.mark.parametrize(
    ("policy", "tag"),
    [
        (POLICY, "Не приоритет"),
        (POLICY, "Не по факту"),
        (HOUR_PACKAGES, "Пакет 20 ч"),
        (HOUR_PACKAGES, "Пакет 1 ч"),
    ],
)
def test_a_tag_that_says_something_else_is_not_taken_for_a_misspelled_tariff(
    policy: Policy, tag: str
) -> None:
    found = lookalike_tariff(policy, tag)
    assert found is None, found.name


def test_a_misspelled_tag_is_taken_for_the_tariff_it_is_nearest_to() -> None:
    found = lookalike_tariff(HOUR_PACKAGES, "Пакет 2 часв")
    assert found is not None
    assert found.name == "Пакет 2 ч"
