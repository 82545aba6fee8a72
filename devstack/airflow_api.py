"""A small client of Airflow's REST API (``/api/v2``), as a monitoring check or a test would use it."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


class AirflowApi:
    """Token from ``POST /auth/token`` (SimpleAuthManager), then bearer-authenticated calls."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    @property
    def token(self) -> str:
        if self._token is None:
            response = self._client.post("/auth/token", json=self._credentials)
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def _call(self, method: str, path: str, **kwargs) -> dict:
        response = self._client.request(
            method, "/api/v2" + path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs
        )
        response.raise_for_status()
        return response.json() if response.content else {}

    def get(self, path: str, **params) -> dict:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict) -> dict:
        return self._call("POST", path, json=body)

    def patch(self, path: str, body: dict) -> dict:
        return self._call("PATCH", path, json=body)

    def dag_runs(self, dag_id: str = "~", **filters) -> list[dict]:
        """Runs of one DAG (``~``: of every DAG), newest first."""
        return self.get(f"/dags/{dag_id}/dagRuns", order_by="-run_after", limit=100, **filters)["dag_runs"]

    def wait_for_run(
        self,
        dag_id: str,
        accept: Callable[[dict], bool],
        *,
        timeout: float,
        poll: float = 2,
    ) -> dict:
        """The first run of ``dag_id`` that ``accept`` takes and that has finished; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        seen: list[dict] = []
        while time.monotonic() < deadline:
            seen = [run for run in self.dag_runs(dag_id) if accept(run)]
            finished = [run for run in seen if run["state"] in ("success", "failed")]
            if finished:
                return finished[-1]
            time.sleep(poll)
        raise TimeoutError(f"no finished {dag_id} run within {timeout:.0f} s; runs seen: {seen}")

    def close(self) -> None:
        self._client.close()
