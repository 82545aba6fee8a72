"""Logic of the retail pipeline: reading, checking and loading workbooks, and alerting.

DAG files in ``dags/`` only wire these functions into tasks; everything here is importable and
unit-tested without Airflow running.
"""
