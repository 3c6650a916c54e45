"""The sync engine: plain Python, no Airflow import, so it is fast to test and reusable anywhere.

``run`` is the frame (``SyncRun.execute``: the one loop), ``protocol`` what it needs of a plug-in and
of the client; ``config``, ``outcomes``, ``summary``, ``sources``, ``convert``, ``sender``, ``rejects``,
``partition`` and ``paths`` serve it. ``members/`` and ``credits/`` are the two plug-ins. The
contract is ``docs/architecture.md``; the reasons are in ``docs/sync-design.md``.
"""
