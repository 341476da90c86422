"""Run the benches that ``bench/README.md`` shows and put what each printed into it.

    python3 dev.py figures [NAME ...]     every block, or the named ones (e.g. cycle_cpu)

A figure block in ``bench/README.md`` names the command that printed it::

    <!-- figures cycle_cpu: python -m bench.cycle_cpu -->
    ```
    (the command's standard output, and a line saying when and where it ran)
    ```
    <!-- /figures -->

so a figure in the page is always what its bench printed, never typed by hand. A bench
that misses a target still has its output written (its last line says the exit code).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "README.md"
ROOT = PAGE.parent.parent
BLOCK = re.compile(
    r"<!-- figures (?P<name>[\w-]+): (?P<command>[^>]+?) -->\n(?P<body>.*?)<!-- /figures -->",
    re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    name: str
    command: tuple[str, ...]  # the arguments after ``python``


def blocks(page: str) -> list[Block]:
    """The page's figure blocks, in order; a command is ``python -m bench.<module> ...``."""
    found: list[Block] = []
    for match in BLOCK.finditer(page):
        words = shlex.split(match["command"])
        if words[:2] != ["python", "-m"] or len(words) < 3 or not words[2].startswith("bench."):
            raise ValueError(f"figures {match['name']}: not a bench command: {match['command']}")
        found.append(Block(match["name"], tuple(words[1:])))
    names = [block.name for block in found]
    if len(set(names)) != len(names):
        raise ValueError(f"figure block names repeat: {sorted(names)}")
    return found


def with_output(page: str, name: str, output: str) -> str:
    """The page with block ``name`` holding ``output``."""

    def fill(match: re.Match[str]) -> str:
        if match["name"] != name:
            return match[0]
        head = match[0][: match.start("body") - match.start()]
        return f"{head}```\n{output.rstrip()}\n```\n<!-- /figures -->"

    filled, count = BLOCK.subn(fill, page)
    if count == 0 or name not in {block.name for block in blocks(page)}:
        raise KeyError(f"no figure block named {name}")
    return filled


def run_block(block: Block, python: str = sys.executable) -> str:
    """Run the block's bench and return what it printed, with a line saying when."""
    started = datetime.now(UTC)
    done = subprocess.run(
        [python, *block.command], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    return (
        f"{done.stdout.rstrip()}\n"
        f"[{started:%Y-%m-%d}, {os.cpu_count()} cores, {minutes:.1f} min, "
        f"exit code {done.returncode}]"
    )


def regenerate(
    names: Sequence[str], page: Path = PAGE, run: Callable[[Block], str] = run_block
) -> int:
    """Run the named blocks' benches (all when none is named), writing the page after each."""
    chosen = [b for b in blocks(page.read_text()) if not names or b.name in names]
    unknown = set(names) - {b.name for b in chosen}
    if unknown:
        print(f"no figure block named {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for block in chosen:
        print(f"$ python {shlex.join(block.command)}", file=sys.stderr, flush=True)
        output = run(block)
        page.write_text(with_output(page.read_text(), block.name, output))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", help="figure blocks to run again (default: all)")
    return regenerate(parser.parse_args(argv).names)


if __name__ == "__main__":
    sys.exit(main())
