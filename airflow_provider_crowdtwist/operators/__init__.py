"""Operators: thin Airflow adapters over the sync engine (``airflow_provider_crowdtwist.sync``).

Import the operators from their modules (``operators.user_sync``, ``operators.activity_credit``);
this package stays import-light so that loading one operator does not import the other.
"""
