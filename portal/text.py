"""Text for people: words for numbers ("1 GPU", "2 GPUs"), and names on one line."""

import unicodedata


def plural(count: int, singular: str, plural_form: str = "") -> str:
    """`count` and the noun phrase that agrees with it (English: "s" unless told)."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def one_line(text: str) -> str:
    """`text` with line breaks and control characters as spaces, and each run of spaces as
    one: what fits in an email header (a line break there raises `BadHeaderError`)."""
    spaced = "".join(
        " " if unicodedata.category(character) in ("Cc", "Zl", "Zp") else character
        for character in text
    )
    return " ".join(spaced.split())
