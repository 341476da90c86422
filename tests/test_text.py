import io

from hypothesis import given
from hypothesis import strategies as st

from worker.text import Folded, table, tables_within

cell = st.text("абв", min_size=1, max_size=12)


@given(st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.lists(cell, min_size=n, max_size=n),
    st.lists(st.lists(cell, min_size=n, max_size=n), max_size=4),
)), st.integers(20, 60))  # fmt: skip
def test_split_tables_keep_the_first_column_and_every_other_once(
    shape: tuple[list[str], list[list[str]]], width: int
) -> None:
    headers, rows = shape
    parts = tables_within(headers, rows, width)
    columns = [part[0].split() for part in parts]
    assert all(names[0] == headers[0] for names in columns)
    assert [name for names in columns for name in names[1:]] == headers[1:]
    for part, names in zip(parts, columns, strict=True):
        assert max(map(len, part)) <= width or len(names) <= 2


def test_a_table_that_fits_stays_whole() -> None:
    headers, rows = ["lead", "stage", "status"], [["1", "В работе", "В срок"]]
    assert tables_within(headers, rows, 120) == [table(headers, rows)]


def test_folded_lines_wrap_at_spaces_under_their_text() -> None:
    out = io.StringIO()
    folded = Folded(out, 20)
    folded.write("  short\n  one two three four five six\n")
    assert out.getvalue() == "  short\n  one two three four\n    five six\n"
