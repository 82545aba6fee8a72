"""The dbt docs site inside the Airflow UI: a nav entry whose page frames what Cosmos's plugin serves.

astronomer-cosmos's own plugin (registered by its package's entry point, nothing to install here) serves the
docs that ``python -m include.retail.transform.dbt_project parse`` builds, at
``/cosmos/<slug>/dbt_docs_index.html``, once ``[cosmos] dbt_docs_projects`` names their folder
(``python -m include.retail.transform.dbt_project docs-setting``). Its menu entry opens them in a new browser
tab. This one gives them a ``url_route``, so the UI shows them at ``/plugin/dbt-docs`` in its own frame, beside
the DAGs. Without that setting it adds nothing.

Configuration only, and no import of the project: MWAA unzips plugins.zip where ``include`` is not importable.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

# The project's slug in [cosmos] dbt_docs_projects (include/retail/transform/dbt_project.py, DBT_DOCS_SLUG).
DBT_DOCS_SLUG = "retail"
URL_ROUTE = "dbt-docs"


def docs_view() -> list[dict]:
    """The UI's external view of the project's docs, when Cosmos is configured to serve them."""
    try:
        projects = json.loads(conf.get("cosmos", "dbt_docs_projects", fallback=None) or "{}")
    except json.JSONDecodeError:
        return []  # Cosmos's plugin logs the bad setting itself
    if DBT_DOCS_SLUG not in projects:
        return []
    # Under the api-server's base path, as Cosmos mounts its app (an MWAA URL has none; a proxy may add one).
    base = urlsplit(conf.get("api", "base_url", fallback="")).path.rstrip("/")
    return [
        {
            "name": "dbt docs",
            "href": f"{base}/cosmos/{DBT_DOCS_SLUG}/dbt_docs_index.html",
            "url_route": URL_ROUTE,
            "destination": "nav",
            "category": "Browse",
        }
    ]


class RetailDbtDocsPlugin(AirflowPlugin):
    name = "retail_dbt_docs"
    external_views = docs_view()
