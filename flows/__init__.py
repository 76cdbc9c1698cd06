"""Prefect flows: each composes tasks and reads like the DAG it runs."""
