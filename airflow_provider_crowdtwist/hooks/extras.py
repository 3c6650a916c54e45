"""The connection's extras, read by the rules of their one definition, ``provider_info.CONN_FIELDS``.

The form (Airflow 3's JSON schema, Airflow 2's widgets) and the hook used to state each extra's
choices, default and range twice, and the two copies could drift: a form offering a choice the hook
refused, or a placeholder promising a default the hook did not apply. Here every rule the hook applies
comes from the field's JSON schema -- ``enum`` (a choice), ``default``, ``type`` (``integer`` or
``number``), ``minimum`` / ``exclusiveMinimum`` / ``maximum`` -- so adding an extra is one entry in
``CONN_FIELDS``. Its :class:`ClientConfig` field has the extra's name unless ``EXTRA_CONFIG_NAMES``
says otherwise; an extra that names no ClientConfig field is the hook's own (``scheme``).

Only ``verify`` has a rule JSON schema cannot state (true, false or a CA bundle path), kept below.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from airflow_provider_crowdtwist.formats import NO_WORDS, YES_WORDS, show
from airflow_provider_crowdtwist.provider_info import CONN_FIELDS, EXTRA_CONFIG_NAMES


class ExtraError(ValueError):
    """An extra's value breaks its definition; the message names the extra (``extra 'x' ...``)."""


def config_name(extra: str) -> str:
    """The :class:`ClientConfig` field an extra sets (its own name unless ``EXTRA_CONFIG_NAMES`` differs)."""
    return EXTRA_CONFIG_NAMES.get(extra, extra)


def read_extras(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every extra of ``CONN_FIELDS``: the value ``given`` (checked and coerced), else its default.

    ``given`` holds only the extras the user set (empty ones dropped). An extra without a default that
    was not given is None. Raises :class:`ExtraError` for the first value its definition refuses.
    """
    return {name: read_extra(name, given) for name in CONN_FIELDS}


def read_extra(name: str, given: Mapping[str, Any]) -> Any:
    """One extra's value by its definition (see :func:`read_extras`)."""
    schema = CONN_FIELDS[name]["schema"]
    value = given[name] if name in given else schema.get("default")
    if value is None:
        return None
    if name == "verify":
        return _verify(value)
    if "enum" in schema:
        return _choice(name, value, schema["enum"])
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if "integer" in types:
        return _whole_number(name, value, schema)
    if "number" in types:
        return _number(name, value, schema)
    if not isinstance(value, str):
        raise ExtraError(f"extra '{name}' must be text, got {show(value)}")
    return value.strip()


def _choice(name: str, value: Any, allowed: list[str]) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in allowed:
        raise ExtraError(
            f"extra '{name}' must be one of {', '.join(repr(a) for a in allowed)}, got {show(value)}"
        )
    return str(text)


def _as_float(name: str, value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ExtraError(f"extra '{name}' must be {what}, got {show(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExtraError(f"extra '{name}' must be {what}, got {show(value)}") from None
    if not math.isfinite(number):
        raise ExtraError(f"extra '{name}' must be a finite {what.removeprefix('a ')}, got {show(value)}")
    return number


def _range_problem(number: float, schema: Mapping[str, Any]) -> str | None:
    if "exclusiveMinimum" in schema and not number > schema["exclusiveMinimum"]:
        return f"greater than {schema['exclusiveMinimum']}"
    if "minimum" in schema and number < schema["minimum"]:
        return f"at least {schema['minimum']}"
    if "exclusiveMaximum" in schema and not number < schema["exclusiveMaximum"]:
        return f"less than {schema['exclusiveMaximum']}"
    if "maximum" in schema and number > schema["maximum"]:
        return f"at most {schema['maximum']}"
    return None


def _number(name: str, value: Any, schema: Mapping[str, Any]) -> float:
    number = _as_float(name, value, "a number")
    problem = _range_problem(number, schema)
    if problem:
        raise ExtraError(f"extra '{name}' must be a number {problem}, got {show(value)}")
    return number


def _whole_number(name: str, value: Any, schema: Mapping[str, Any]) -> int:
    number = _as_float(name, value, "a whole number")
    if number != int(number):
        raise ExtraError(f"extra '{name}' must be a whole number, got {show(value)}")
    problem = _range_problem(number, schema)
    if problem:
        raise ExtraError(f"extra '{name}' must be a whole number {problem}, got {show(value)}")
    return int(number)


def _verify(value: Any) -> bool | str:
    """true, false (the words of ``formats``) or the path of an existing CA bundle file."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ExtraError(f"extra 'verify' must be true, false or a CA bundle path, got {show(value)}")
    text = value.strip()
    if text.lower() in YES_WORDS:
        return True
    if text.lower() in NO_WORDS:
        return False
    if not os.path.exists(text):
        raise ExtraError(f"extra 'verify': CA bundle file {text!r} does not exist")
    return text


__all__ = ["ExtraError", "config_name", "read_extra", "read_extras"]
