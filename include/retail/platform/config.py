"""The names that tie the code to its configuration, the same in every environment.

Only the values behind these names differ between the embedded stack, docker-compose and MWAA:
connections come from ``AIRFLOW_CONN_*`` variables or a secrets backend, settings from Airflow
Variables (``AIRFLOW_VAR_*`` or the secrets backend).
"""

from __future__ import annotations

# Airflow connections.
AWS_CONN_ID = "aws_default"  # S3 and SNS; on MWAA the execution role, locally a moto endpoint_url
WAREHOUSE_CONN_ID = "retail_warehouse"  # the loader role: writes bronze and the ledger, nothing else
WAREHOUSE_ADMIN_CONN_ID = "retail_warehouse_admin"  # owner: applies include/sql (DDL and grants)
WAREHOUSE_TRANSFORM_CONN_ID = "retail_warehouse_transform"  # dbt: reads bronze, builds silver and gold

# Airflow Variables.
BUCKET_VARIABLE = "retail_bucket"
# How uploads are detected: "sensor" (the default) or "events" (include/retail/detect/trigger.py).
TRIGGER_VARIABLE = "retail_trigger"
# events only: the SQS queue the bucket notifies of uploads under incoming/.
UPLOADS_QUEUE_VARIABLE = "retail_uploads_queue_url"
ALERTS_TOPIC_VARIABLE = "retail_alerts_topic_arn"
MAX_REJECTED_FRACTION_VARIABLE = "retail_max_rejected_fraction"
DEFAULT_MAX_REJECTED_FRACTION = 0.01  # a file with more than 1% untypeable rows is rejected whole
# The reader's limits (include/retail/ingest/sandboxed_read.py, ReadLimits: each field documents its default):
# the Variable ``retail_read_limit_<field>`` overrides field <field>, e.g. retail_read_limit_max_memory_mb.
READ_LIMIT_VARIABLE_PREFIX = "retail_read_limit_"
# What a value may be (include/retail/ingest/value_rules.py, ValueRules: each field documents its default): the
# Variable ``retail_value_rule_<field>`` overrides field <field>, e.g. retail_value_rule_max_abs_quantity = 5000000,
# retail_value_rule_earliest_invoice_date = 1995-01-01.
VALUE_RULE_VARIABLE_PREFIX = "retail_value_rule_"
# How the files under a key prefix write dates with slashes, as JSON: {"incoming/uk/": "day_first"} (or
# "month_first"). A file under no declared prefix must settle the order by its own dates, or is rejected.
DATE_ORDER_VARIABLE = "retail_date_order"
DEFAULT_DATE_ORDER = "{}"  # no prefix declared: every file's dates settle their own order

# The bucket's layout.
INCOMING_PREFIX = "incoming/"
PROCESSED_PREFIX = "processed/"
QUARANTINE_PREFIX = "quarantine/"
FAILED_PREFIX = "failed/"  # the platform's fault after the last try: move it back to incoming/ to retry
REPORT_SUFFIX = ".report.json"

# Alerts.
ALERT_SUBJECT_PREFIX = "[retail]"
# A failure alert SNS does not take is tried again after each of these pauses (seconds), then logged whole.
ALERT_RETRY_DELAYS = (2, 4, 8, 16, 32)
