"""The sync engine: plain Python, no Airflow import, so it is fast to test and reusable anywhere.

``run`` is the skeleton every sync drives (settings, summary, rejects, progress, abort/stop, the one
error -> outcome place); ``outcomes``, ``summary``, ``sources``, ``convert``, ``sender``, ``progress``,
``rejects`` and ``paths`` (working copies, locks) serve it. Member sync: ``attributes``, ``validation``,
``member_mapping``, ``spool``, ``state``, ``member_sync``. Credits: ``ledger``, ``credit_mapping``,
``credit_sync``. The contract is ``docs/architecture.md``.
"""
