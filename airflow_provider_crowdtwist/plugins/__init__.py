"""CrowdTwist in the Airflow UI: a tab on every CrowdTwist task and a syncs page (Airflow 3.1+).

``plugin.py`` is what Airflow loads; ``app.py`` the API-server routes and their access checks;
``render.py``, ``charts.py`` and ``files.py`` plain Python that turns summaries and file samples into
HTML (no Airflow import, so they are tested as functions). See docs/ui.md.
"""
