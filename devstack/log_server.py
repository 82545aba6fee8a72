"""Airflow's task log server (what `airflow serve-logs` runs), bound to 127.0.0.1 on a port of the stack's.

Airflow 3.3.1 has settings for the log servers' ports (``[logging] worker_log_server_port`` and
``trigger_log_server_port``) but none for their address: the scheduler and the triggerer start theirs on
every interface (``airflow.utils.serve_logs.core``, ``host=""``). The embedded stack starts those two
services with ``--skip-serve-logs`` and runs this instead, once per port, on loopback only; tasks record
``127.0.0.1`` as their hostname (``[core] hostname_callable``) so that the api-server asks here for the logs
of running tasks.
"""

from __future__ import annotations

import argparse

LOOPBACK = "127.0.0.1"


def loopback_hostname() -> str:
    """``[core] hostname_callable`` of the embedded stack: every process of it runs on this machine."""
    return LOOPBACK


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.log_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvicorn

    # The application and options of airflow.utils.serve_logs.core.serve_logs, on loopback.
    uvicorn.run(
        "airflow.utils.serve_logs.log_server:get_app",
        host=LOOPBACK,
        port=args.port,
        factory=True,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
