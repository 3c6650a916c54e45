"""The sync engine: plain Python, no Airflow import, so it is fast to test and reusable anywhere.

Generic pieces shared by every sync: ``outcomes`` (what happened to a row), ``summary`` (counts and
thresholds), ``sources`` (anything -> DataFrame chunks), ``convert`` (values -> what the API takes),
``sender`` (bounded concurrent sending), ``progress`` and ``rejects`` (the report). Member sync:
``attributes``, ``validation``, ``member_mapping``, ``spool``, ``state``, ``member_sync``. Activity
credits: ``ledger``, ``credit_mapping``, ``credit_sync``.
"""
