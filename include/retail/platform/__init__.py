"""What every stage stands on: configuration names (``config``), the Assets that join the DAGs (``assets``),
connections as tasks get them (``connections``), the warehouse's DDL and logins (``warehouse``), alerts over
SNS (``alerts``) and text from outside made safe to print or send (``text``). It imports no stage."""
