"""The embedded local stack (PostgreSQL, a moto server, Airflow's services) that ``make`` and the tests run on."""

from pathlib import Path

# The checkout this package runs from: the DAGs, plugins and dbt project the stack's Airflow reads.
REPO_ROOT = Path(__file__).resolve().parent.parent
