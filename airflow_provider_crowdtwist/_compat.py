"""The Airflow names the provider uses that ``common.compat.sdk`` did not always export.

The provider supports ``apache-airflow-providers-common-compat>=1.8.0`` (the first release with
``common.compat.sdk``, and the last line that installs on Airflow 2.10). That release has ``BaseHook``,
``BaseOperator``, ``BaseSensorOperator`` and ``ObjectStoragePath``, but not the exceptions, ``conf`` or
``mask_secret``, which came in 1.11-1.23. Importing those from ``compat.sdk`` therefore failed on the
lowest supported set with an ``ImportError`` at the first connection read. Each name here is looked
up in ``compat.sdk`` first (so a newer compat release keeps deciding), then in the Airflow 3 SDK module,
then in the Airflow 2 module -- the same order newer compat releases use.

Resolved lazily (module ``__getattr__``): importing this module imports no Airflow module.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXCEPTION_MODULES = ("airflow.providers.common.compat.sdk", "airflow.sdk.exceptions", "airflow.exceptions")

#: name -> modules to try, in order.
_LOCATIONS: dict[str, tuple[str, ...]] = {
    "AirflowException": _EXCEPTION_MODULES,
    "AirflowFailException": _EXCEPTION_MODULES,
    "AirflowSensorTimeout": _EXCEPTION_MODULES,
    "AirflowSkipException": _EXCEPTION_MODULES,
    "TaskDeferred": _EXCEPTION_MODULES,
    "conf": ("airflow.providers.common.compat.sdk", "airflow.sdk.configuration", "airflow.configuration"),
    "BaseOperatorLink": (
        "airflow.providers.common.compat.sdk",
        "airflow.sdk",
        "airflow.models.baseoperatorlink",
    ),
    "mask_secret": (
        "airflow.providers.common.compat.sdk",
        "airflow.sdk.log",
        "airflow.sdk.execution_time.secrets_masker",
        "airflow.utils.log.secrets_masker",
    ),
    "redact": (
        "airflow.providers.common.compat.sdk",
        "airflow.sdk.log",
        "airflow.sdk.execution_time.secrets_masker",
        "airflow.utils.log.secrets_masker",
    ),
}

__all__ = sorted(_LOCATIONS)


def resolve(name: str) -> Any:
    """The object ``name`` from the first module in its list that has it."""
    for module_name in _LOCATIONS[name]:
        try:
            module = importlib.import_module(module_name)
            return getattr(module, name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"{name} is in none of {', '.join(_LOCATIONS[name])}")


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = resolve(name)
    globals()[name] = value  # resolved once
    return value


def airflow_version(version: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of the installed Airflow (or of ``version``): what the UI features depend on."""
    if version is None:
        from airflow import __version__ as version
    pieces = [*str(version).split("."), "0"][:2]
    major, minor = (int("".join(c for c in p if c.isdigit()) or 0) for p in pieces)
    return major, minor


def min_length_masked_secret() -> int:
    """Airflow's ``[logging] min_length_masked_secret``: a secret shorter than this is not masked.

    Read here, in the Airflow layer, and handed to the client as a number (``ClientConfig``), so the
    client and the sync engine follow Airflow's rule for member passwords without importing Airflow.
    Airflow 3.0-3.3 default it to 5. Airflow 2.11 has no such option (its masker hides secrets of any
    length); there Airflow 3's default applies unless the option is set (``[logging]`` or
    ``AIRFLOW__LOGGING__MIN_LENGTH_MASKED_SECRET``).
    """
    from airflow_provider_crowdtwist.client.config import DEFAULT_MIN_LENGTH_MASKED_SECRET

    # A value that is no number raises Airflow's own configuration error, as Airflow's masker does.
    value = resolve("conf").getint(
        "logging", "min_length_masked_secret", fallback=DEFAULT_MIN_LENGTH_MASKED_SECRET
    )
    return max(int(value), 0)
