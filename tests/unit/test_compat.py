"""``_compat`` finds every Airflow name the provider uses, also where ``common.compat.sdk`` lacks it.

The lowest supported common-compat (1.8.0) has no exceptions, ``conf`` or ``mask_secret`` in its
``sdk`` module; the fallback path is exercised here by hiding them from a stand-in ``sdk`` module, and
for real by the ``AIRFLOW_LINE=min`` CI leg.
"""

from __future__ import annotations

import sys
import types

import pytest

from airflow_provider_crowdtwist import _compat


@pytest.mark.parametrize("name", _compat.__all__)
def test_every_name_resolves(name: str) -> None:
    assert _compat.resolve(name) is not None


def test_falls_back_when_compat_sdk_lacks_the_names(monkeypatch: pytest.MonkeyPatch) -> None:
    old_sdk = types.ModuleType("airflow.providers.common.compat.sdk")  # like common-compat 1.8.0
    monkeypatch.setitem(sys.modules, "airflow.providers.common.compat.sdk", old_sdk)
    exc = _compat.resolve("AirflowFailException")
    assert issubclass(exc, _compat.resolve("AirflowException"))
    assert callable(_compat.resolve("mask_secret"))
    assert _compat.resolve("conf").has_option("core", "dags_folder")


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _compat.NotAName  # noqa: B018
