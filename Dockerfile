# The project's Airflow image (docker-compose.yaml builds it): the official image of the Airflow version
# requirements.txt pins, on MWAA's Python; the runtime requirements at exactly the versions the tests ran with;
# dbt in a virtualenv of its own; and the dbt manifest Cosmos renders the transform DAG from.
# No `# syntax=` line and no BuildKit-only instruction: the classic builder builds it too.

# The official image by default; the compose test builds this same file on a local stand-in of it
# (tests/compose/standins/airflow), on machines that reach no image registry.
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.1-python3.12
FROM ${AIRFLOW_BASE_IMAGE}

# A directory for the dbt virtualenv, owned like the rest of the image (user airflow, group 0), so that pip
# runs as airflow, as the image expects, and any uid of group 0 can use it.
USER root
RUN install -d -o airflow -g 0 -m 0775 /opt/dbt-venv
USER airflow

# Runtime requirements only (no dev tools, no dbt), with the committed lock as the constraint file: every
# package gets the version requirements/py312.lock resolved against MWAA's constraints and the tests used.
COPY --chown=airflow:0 requirements.txt /tmp/retail/requirements.txt
COPY --chown=airflow:0 requirements/py312.lock /tmp/retail/py312.lock
RUN pip install --no-cache-dir -r /tmp/retail/requirements.txt -c /tmp/retail/py312.lock

# dbt conflicts with Airflow's pins (pathspec), so it lives in its own virtualenv, installed from its lock;
# Cosmos calls it by path. PIP_USER=false: the image may set PIP_USER, which a virtualenv's pip refuses.
COPY --chown=airflow:0 requirements/dbt-py312.lock /tmp/retail/dbt-py312.lock
RUN python -m venv /opt/dbt-venv \
    && PIP_USER=false /opt/dbt-venv/bin/pip install --no-cache-dir -r /tmp/retail/dbt-py312.lock \
    && /opt/dbt-venv/bin/dbt --version

ENV PYTHONPATH=/opt/airflow \
    RETAIL_DBT_EXECUTABLE=/opt/dbt-venv/bin/dbt \
    RETAIL_DBT_PROJECT_DIR=/opt/airflow/include/dbt \
    DBT_SEND_ANONYMOUS_USAGE_STATS=False \
    AIRFLOW__COSMOS__ENABLE_TELEMETRY=False

# The project, so that the image also runs without the working tree mounted (docker-compose mounts it over
# these for live editing). PYTHONPATH=/opt/airflow makes `include` importable, as the DAGs expect.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/

# The manifest, built now so that parsing the DAG never runs dbt, where include/retail/transform/dbt_project.py says
# (its `parse` fails the build when no manifest was written there). `dbt parse` needs a profile but does not
# connect: include/dbt/profiles.yml reads these placeholders, which are not secrets.
RUN DBT_LOG_PATH=/tmp/dbt-logs \
    RETAIL_DBT_HOST=localhost RETAIL_DBT_PORT=5432 RETAIL_DBT_USER=retail_transformer \
    RETAIL_DBT_PASSWORD=not-a-secret-parse-does-not-connect RETAIL_DBT_DATABASE=retail \
    python -m include.retail.transform.dbt_project parse
