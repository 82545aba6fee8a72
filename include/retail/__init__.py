"""Logic of the retail pipeline, laid out as the flow it implements, one sub-package per stage:

- ``detect``: how an upload under incoming/ is noticed (the S3 sensor, or S3 events through SQS) and which
  keys a run takes;
- ``ingest``: fetch one object, read and check it against the data contract, COPY it into bronze with its
  ledger row in one transaction, file it under processed/ or quarantine/, announce what was loaded;
- ``transform``: the dbt project as Cosmos runs it, what dbt built, the gold report and the summary;
- ``platform``: what every stage stands on: configuration names, Assets, connections, the warehouse's DDL and
  alerts over SNS;
- ``health``: the checks ``make health`` makes, across every stage.

DAG files in ``dags/`` only wire these functions into tasks; each stage's ``tasks`` module is the Airflow-facing
side, and everything else is importable and unit-tested without Airflow running. Imports go down the flow, never
up: platform imports no stage, detect only platform, ingest platform and detect, transform platform and ingest
(tests/unit/test_package_layout.py holds them to it).
"""
