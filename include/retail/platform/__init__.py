"""What every stage stands on: configuration names (``config``), the Assets that join the DAGs (``assets``),
connections as tasks get them (``connections``), the warehouse's DDL and logins (``warehouse``) and alerts over
SNS (``alerts``). It imports no stage."""
