from pathlib import Path

import pytest

from bench.figures import PAGE, Block, blocks, regenerate, with_output

PAGE_TEXT = """# Benches

<!-- figures one: python -m bench.one --fast -->
```
old one
```
<!-- /figures -->
between
<!-- figures two: python -m bench.two -->
```
old two
```
<!-- /figures -->
"""


def test_a_block_names_its_bench_and_arguments() -> None:
    assert blocks(PAGE_TEXT) == [
        Block("one", ("-m", "bench.one", "--fast")),
        Block("two", ("-m", "bench.two")),
    ]


def test_new_output_replaces_only_its_own_block() -> None:
    page = with_output(PAGE_TEXT, "two", "new two\nline 2\n")
    assert "old one" in page
    assert "old two" not in page
    assert "```\nnew two\nline 2\n```\n<!-- /figures -->" in page
    assert blocks(page) == blocks(PAGE_TEXT)
    assert with_output(page, "two", "again") == with_output(PAGE_TEXT, "two", "again")


@pytest.mark.parametrize(
    "command", ["python -c 'print(1)'", "python -m worker once", "bash bench/x.sh"]
)
def test_a_block_runs_only_a_bench(command: str) -> None:
    with pytest.raises(ValueError, match="not a bench command"):
        blocks(f"<!-- figures x: {command} -->\n```\n```\n<!-- /figures -->")


def test_block_names_are_unique() -> None:
    twice = PAGE_TEXT.replace("figures two:", "figures one:")
    with pytest.raises(ValueError, match="repeat"):
        blocks(twice)


def test_regenerating_writes_each_chosen_block_and_refuses_unknown_names(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(PAGE_TEXT)
    ran: list[str] = []

    def run(block: Block) -> str:
        ran.append(block.name)
        return f"printed by {block.command[1]}"

    assert regenerate(["two"], page, run) == 0
    assert ran == ["two"]
    assert "printed by bench.two" in page.read_text()
    assert "old one" in page.read_text()
    assert regenerate(["three"], page, run) == 2
    assert regenerate([], page, run) == 0
    assert ran == ["two", "one", "two"]


def test_every_block_of_the_bench_page_runs_a_bench_module_that_exists() -> None:
    found = blocks(PAGE.read_text())
    assert len(found) >= 8
    for block in found:
        module = block.command[1].removeprefix("bench.")
        assert (PAGE.parent / f"{module}.py").is_file(), block
