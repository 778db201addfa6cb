"""Words for numbers: "1 GPU", "2 GPUs", "1 concurrent workspace"."""


def plural(count: int, singular: str, plural_form: str = "") -> str:
    """`count` and the noun phrase that agrees with it (English: "s" unless told)."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"
