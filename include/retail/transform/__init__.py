"""Build silver and gold with dbt and say what was built:

- ``dbt_project``: where the dbt project, its executable and its manifest are; ``cosmos_config``: the project as
  Cosmos renders and runs it;
- ``dbt_results``: what dbt built and how it ended, from its artifacts; ``layers``: rows per layer and gold's
  revenue, read from the warehouse;
- ``gold_report`` (the figures), ``gold_report_page`` (the HTML page), ``gold_report_publish`` (to the bucket);
- ``summary``: the transform's announcement; ``tasks``: the Airflow tasks and the failure alert.
"""
