"""The configuration reference as a Markdown table, generated from :class:`Settings`.

``python -m config.reference`` prints it; the README carries the same table
between two markers, and a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import SecretStr

from config.settings import Settings, env_name

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in args if arg is not type(None))
    if origin is tuple:
        return "comma-separated list"
    if origin is Mapping:
        return "JSON object"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    return _PLAIN_TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))


_PLAIN_TYPES: dict[Any, str] = {
    SecretStr: "secret",
    Path: "path",
    int: "integer",
    float: "number",
    str: "text",
    bool: "true/false",
}


def _default(value: Any) -> str:
    if value is None or value == ():
        return ""
    if isinstance(value, Enum):
        return f"`{value.value}`"
    return f"`{value}`"


def markdown_table() -> str:
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(
            f"| `{env_name(name)}` | {_type_name(field.annotation)} | {_default(field.default)} "
            f"| {description} |"
        )
    return "\n".join(rows)


def readme_section(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8")
    return text[text.index(START) + len(START) : text.index(END)].strip()


def update_readme(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{markdown_table()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    import sys

    if "--update" in sys.argv[1:]:
        update_readme(Path(__file__).resolve().parent.parent / "README.md")
    else:
        print(markdown_table())
