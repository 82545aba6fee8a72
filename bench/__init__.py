"""Benchmarks of the pipeline against the common way and plain dbt: ``python -m bench.<module>``."""
