"""Small shared vocabulary: the value formats CrowdTwist documents, yes/no words, a short rendering.

One definition each, imported by the hook (extras), the client (activity flags), the engine (row
checks and conversion) and the sandbox (its validation of what it receives), so the provider and the
sandbox can never disagree on what an email address or a Canadian postal code looks like.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any


class TextEnum(str, Enum):
    """A ``str`` enum that prints as its value: values go to XComs, JSON lines and log tables as is."""

    def __str__(self) -> str:
        return str(self.value)


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
#: US: 5 digits, or 9 with or without the hyphen (O:UserCreate; CrowdTwist validates only the first 5).
US_ZIP = re.compile(r"^\d{5}(-?\d{4})?$")
CA_POSTAL = re.compile(r"^[A-Za-z]\d[A-Za-z] \d[A-Za-z]\d$")
COUNTRY = re.compile(r"^[A-Za-z]{2}$")

#: Words read as true / false (lower-cased, stripped) wherever text stands for a yes/no setting.
YES_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
NO_WORDS = frozenset({"0", "false", "f", "no", "n", "off"})

SHOW_MAX = 60


def show(value: Any) -> str:
    """A short, printable rendering of a value for error messages (never a whole blob)."""
    text = repr(value)
    return text if len(text) <= SHOW_MAX else text[: SHOW_MAX - 3] + "..."
