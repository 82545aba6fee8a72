"""Compose projects driven as a user drives them, each in a work directory of its own.

``ComposeProject`` is the part both Docker harnesses share (the compose test, tests/compose, and the MWAA rehearsal,
tests/mwaa): each compose command run and logged, each step timed, ``up --wait`` checked container by container,
every service's log kept on failure, ``down -v`` checked to leave nothing. ``ComposeStack`` is the project's own
docker-compose.yaml, from a copy of the working tree: a copy, so that the test sees uncommitted changes but writes
nothing (``.env``, the dbt manifest, files owned by the containers' uid) into the checkout, and so that ignored files
(virtualenvs, state) never reach the build. Everything about a run (each compose command and its output, the
timings, and on failure every service's log) is kept under ``test-artifacts/<harness>/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from devstack.state import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "compose"
COMPOSE = REPO_ROOT / ".venv" / "bin" / "docker-compose"
# The official image's user: uid 50000, group 0 (AIRFLOW_UID's default in .env.example).
AIRFLOW_UID = 50000
PROJECT_LABEL = "com.docker.compose.project"
# What of the caller's environment reaches docker-compose: how to find the engine, nothing else. Compose lets
# the environment override .env, and the test session's environment is full of the embedded stack's settings.
PASSED_ENVIRONMENT = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH")
LOG_LINES = 200
# The one service that runs to completion (every other one keeps running).
INIT_SERVICE = "airflow-init"


class ComposeError(RuntimeError):
    pass


class ComposeProject:
    """One compose project (``<prefix>-…``) run from ``files`` in a work directory of its own.

    ``one_off`` names the service that runs to completion (every other one keeps running); ``shell_env`` is what
    the compose command's environment carries besides how to reach the engine (variables the files interpolate).
    """

    def __init__(
        self,
        files: Sequence[str],
        *,
        prefix: str,
        artifacts: Path,
        one_off: str | None = None,
        label: str = "compose",
        shell_env: Mapping[str, str] | None = None,
        log_lines: int = LOG_LINES,
    ) -> None:
        self.files = list(files)
        self.artifacts = artifacts
        self.one_off = one_off
        self.label = label
        self.shell_env = dict(shell_env or {})
        self.log_lines = log_lines
        self.project = f"{prefix}-{secrets.token_hex(4)}"
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"{self.project}-"))
        self.timings: dict[str, float] = {}
        shutil.rmtree(self.artifacts, ignore_errors=True)  # a failed earlier run's logs would mislead
        self.artifacts.mkdir(parents=True)

    def prepared(self) -> bool:
        """Whether the work directory holds the project (if not, it was never started: nothing to collect or stop)."""
        return all((self.work_dir / name).exists() for name in self.files)

    # -- docker-compose ------------------------------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 1800, capture: bool = False, input: str | None = None) -> str:
        """Run one docker-compose command in the work dir (``input`` on its stdin); its output goes to compose.log
        (and is returned when ``capture``). Raises with the command and the output's tail when it fails."""
        command = [str(COMPOSE), "-p", self.project, *(arg for name in self.files for arg in ("-f", name)), *args]
        env = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
        env |= self.shell_env
        env["DOCKER_BUILDKIT"] = "0"  # BuildKit would pull its frontend image from a registry
        started = time.monotonic()
        try:
            result = subprocess.run(
                command,
                cwd=self.work_dir,
                env=env,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            stdout, output, returncode = result.stdout, result.stdout + result.stderr, result.returncode
        except subprocess.TimeoutExpired as expired:
            stdout = _text(expired.stdout)
            output = stdout + _text(expired.stderr) + f"\n(killed after {timeout:.0f} s)"
            returncode = None
        shown = " ".join(["docker-compose", *args])
        with (self.artifacts / "compose.log").open("a") as log:
            log.write(f"\n$ {shown}  # exit {returncode}, {time.monotonic() - started:.1f} s\n{output}")
        if returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-40:])
            raise ComposeError(f"`{shown}` failed (exit {returncode}) in {self.work_dir}:\n{tail}")
        return stdout if capture else ""

    def timed(self, step: str, action, *args, **kwargs):
        """Run ``action``, recording how long it took under ``step`` (kept in timings.txt, even after a failure)."""
        started = time.monotonic()
        try:
            return action(*args, **kwargs)
        finally:
            self.record(step, time.monotonic() - started)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A named step of a test's flow: printed, timed into timings.txt, and named in the failure if it fails."""
        print(f"[{self.label}] step: {name}", flush=True)
        started = time.monotonic()
        try:
            yield
        except Exception as error:
            error.add_note(f"in step: {name}")
            raise
        finally:
            self.record(name, time.monotonic() - started)

    @contextmanager
    def kept_until_down(self, request, prepare: Callable[[], None]) -> Iterator[None]:
        """A module fixture's life: ``prepare``, yield, then whatever happened keep a failure's diagnostics, bring
        the project down (checked empty) and record the total."""
        started = time.monotonic()
        failed_before = request.session.testsfailed
        setup_failed = True
        try:
            prepare()
            setup_failed = False
            yield
        finally:
            try:
                if setup_failed or request.session.testsfailed > failed_before:
                    self.collect_diagnostics()
                self.down()
            finally:
                self.record("total", time.monotonic() - started)

    def record(self, step: str, seconds: float) -> None:
        self.timings[step] = seconds
        print(f"[{self.label}] {step}: {seconds:.1f} s", flush=True)
        (self.artifacts / "timings.txt").write_text(self.timings_table())

    def timings_table(self) -> str:
        width = max((len(name) for name in self.timings), default=0)
        return "".join(f"{name:<{width}}  {seconds:8.1f} s\n" for name, seconds in self.timings.items())

    def up(
        self,
        phase: str,
        *,
        scale: dict[str, int] | None = None,
        wait_timeout: int = 900,
        build: bool = True,
        services: Sequence[str] = (),
        options: Sequence[str] = (),
    ) -> None:
        """``build`` (unless ``build`` is false), then ``up -d --wait [options] [services]``: every service (of
        ``services``, if given) running and healthy, the one-off service completed."""
        scaling = [arg for service, count in (scale or {}).items() for arg in ("--scale", f"{service}={count}")]
        try:
            if build:
                self.timed(f"{phase}: build", self.compose, "build")
            self.timed(
                f"{phase}: up",
                self.compose,
                "up",
                "-d",
                "--wait",
                "--wait-timeout",
                str(wait_timeout),
                *scaling,
                *options,
                *services,
                timeout=wait_timeout + 120,
            )
            self.check_up(scale or {}, services)
        except ComposeError:
            self.collect_diagnostics()
            raise

    def check_up(self, scale: dict[str, int], only: Sequence[str] = ()) -> None:
        """Every active service (of ``only``, if given) has its containers running (healthy where checked) and the
        one-off service exited 0.

        ``up --wait`` alone is not enough: Compose 2.40 exits 0 when airflow-init fails, leaving the services
        that depend on it created but never started.
        """
        services = list(only) or self.compose("config", "--services", capture=True).split()
        containers = self.containers()
        trouble = []
        for service in services:
            states = [state for state in containers if state["Service"] == service]
            if len(states) != scale.get(service, 1):
                trouble.append(f"{service}: {len(states)} containers, {scale.get(service, 1)} expected")
            trouble += [f"{state['Name']}: {state['Status']}" for state in states if not _up(state, self.one_off)]
        if trouble:
            raise ComposeError("`docker-compose up --wait` returned, but not everything is up:\n" + "\n".join(trouble))

    def containers(self) -> list[dict]:
        """``ps -a`` as JSON, one object per container (Service, Name, State, Health, ExitCode, Status)."""
        listed = self.compose("ps", "-a", "--format", "json", capture=True, timeout=120)
        return [json.loads(line) for line in listed.splitlines() if line.strip()]

    def container_ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service, capture=True).split()

    def exec(
        self, service: str, *command: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        """``command`` in ``service``'s running container (``input`` on its stdin), logged to compose.log; raises on a
        non-zero exit when ``check``.

        Through ``docker exec`` on the container: ``docker-compose exec`` (2.40) exits 0 whatever the command's
        status against an engine of API 1.41 (Debian 12's docker.io 20.10), so a failed check would pass.
        """
        ids = self.container_ids(service)
        if not ids:
            raise ComposeError(f"{service} has no running container to run {command[0]} in")
        env = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
        started = time.monotonic()
        try:
            result = subprocess.run(
                ["docker", "exec", "-i", ids[0], *command],
                env=env,
                input=input or "",
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            raise ComposeError(f"`{' '.join(command)}` in {service} did not end within {timeout:.0f} s") from expired
        shown = f"docker exec ({service}) {' '.join(command)}"
        output = result.stdout + result.stderr
        with (self.artifacts / "compose.log").open("a") as log:
            log.write(f"\n$ {shown}  # exit {result.returncode}, {time.monotonic() - started:.1f} s\n{output}")
        if check and result.returncode != 0:
            tail = "\n".join(output.strip().splitlines()[-40:])
            raise ComposeError(f"`{shown}` failed (exit {result.returncode}):\n{tail}")
        return result

    # -- failure and teardown ------------------------------------------------------------------------------

    def collect_diagnostics(self) -> None:
        """``ps -a`` and each service's last ``log_lines`` lines into the artifacts folder, and a summary printed."""
        if not self.prepared():
            return  # never prepared, so never started
        try:
            table = self.compose("ps", "-a", capture=True, timeout=120)
            (self.artifacts / "ps.txt").write_text(table)
            states = self.containers()
        except ComposeError as error:
            print(f"[{self.label}] could not list the containers: {error}", flush=True)
            return
        print(f"[{self.label}] containers of {self.project}:\n{table}", flush=True)
        for service in sorted({state["Service"] for state in states}):
            try:
                tail = str(self.log_lines)
                logs = self.compose("logs", "--no-color", "--tail", tail, service, capture=True, timeout=120)
            except ComposeError as error:
                logs = str(error)
            (self.artifacts / f"{service}.log").write_text(logs)
        for state in [state for state in states if not _up(state, self.one_off)]:
            tail = "\n".join((self.artifacts / f"{state['Service']}.log").read_text().splitlines()[-15:])
            print(f"[{self.label}] {state['Name']}: {state['Status']}; last lines:\n{tail}", flush=True)
        print(f"[{self.label}] logs of every service in {self.artifacts}", flush=True)

    def leftovers(self) -> dict[str, list[str]]:
        """The containers, networks and volumes of this project the engine still has."""
        found = {}
        for kind, command in (
            ("containers", ["docker", "ps", "-a", "--format", "{{.Names}}"]),
            ("networks", ["docker", "network", "ls", "--format", "{{.Name}}"]),
            ("volumes", ["docker", "volume", "ls", "--format", "{{.Name}}"]),
        ):
            listed = subprocess.run(
                [*command, "--filter", f"label={PROJECT_LABEL}={self.project}"],
                capture_output=True,
                text=True,
                check=True,
            )
            found[kind] = listed.stdout.split()
        return found

    def down(self) -> None:
        """``down -v --remove-orphans`` for every profile; assert nothing of the project is left (whatever is, is
        removed all the same, so that a failed run leaks nothing); remove the work dir."""
        try:
            if not self.prepared():
                return  # never prepared, so never started
            self.timed("down", self.compose, "--profile", "*", "down", "-v", "--remove-orphans", timeout=600)
            left = self.leftovers()
            if any(left.values()):
                self._force_remove(left)
                raise AssertionError(f"`docker compose down -v` left part of {self.project} behind: {left}")
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _force_remove(self, left: dict[str, list[str]]) -> None:
        for kind, command in (
            ("containers", ["docker", "rm", "-f", "-v"]),
            ("networks", ["docker", "network", "rm"]),
            ("volumes", ["docker", "volume", "rm", "-f"]),
        ):
            if left[kind]:
                subprocess.run([*command, *left[kind]], capture_output=True, check=False)


class ComposeStack(ComposeProject):
    """The project's docker-compose.yaml (``retail-compose-test-…``), with ``override``, in a copy of the working
    tree with its own ``.env``."""

    def __init__(self, override: Path, *, repo: Path = REPO_ROOT, artifacts: Path = ARTIFACTS) -> None:
        self.repo = repo
        self.override = override.resolve().relative_to(repo.resolve())
        super().__init__(
            ["docker-compose.yaml", str(self.override)],
            prefix="retail-compose-test",
            artifacts=artifacts,
            one_off=INIT_SERVICE,
        )
        self.env: dict[str, str] = {}

    def prepared(self) -> bool:
        return (self.work_dir / ".env").exists()

    # -- the work directory and its .env -------------------------------------------------------------------

    def prepare(self) -> None:
        """Copy the tracked and untracked, not ignored, files; write ``.env`` from ``.env.example`` as docs/compose.md
        says."""
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=self.repo,
            capture_output=True,
            check=True,
        ).stdout
        for name in sorted({name for name in listed.decode().split("\0") if name}):
            source = self.repo / name
            if not source.exists() and not source.is_symlink():
                continue  # deleted in the working tree, not yet in the index
            target = self.work_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
        self.work_dir.chmod(0o755)
        shutil.copyfile(self.work_dir / ".env.example", self.work_dir / ".env")
        ports = set()
        while len(ports) < 3:
            ports.add(free_port())
        changes = dict(zip(("AIRFLOW_API_PORT", "MOTO_PORT", "WAREHOUSE_PORT"), map(str, ports), strict=True))
        if os.geteuid() == 0:
            # Root's files are not writable by the containers' uid: give the tree to it, as a Docker Desktop
            # user's files effectively are, so that .env.example's AIRFLOW_UID works unchanged.
            _chown_tree(self.work_dir, AIRFLOW_UID, 0)
        elif sys.platform == "linux":
            changes["AIRFLOW_UID"] = str(os.getuid())  # docs/compose.md's step for Linux users
        self.set_env(**changes)

    def set_env(self, **changes: str) -> None:
        """Set variables in ``.env``: the line that sets (or, commented out, shows) each, else a new line."""
        path = self.work_dir / ".env"
        text = path.read_text()
        for name, value in changes.items():
            line = f"{name}={value}"
            for pattern in (rf"(?m)^{name}=.*$", rf"(?m)^#\s*{name}=\S*\s*$"):
                text, found = re.subn(pattern, lambda _match, line=line: line, text, count=1)
                if found:
                    break
            else:
                text = text.rstrip("\n") + f"\n{line}\n"
        path.write_text(text)
        self.env = _read_env(path)


def _up(state: dict, one_off: str | None) -> bool:
    """A container as ``up`` should leave it: running and not unhealthy, or the one-off service exited 0."""
    if state["Service"] == one_off:
        return state["State"] == "exited" and state.get("ExitCode") == 0
    return state["State"] == "running" and state.get("Health") in ("", "healthy")


def _read_env(path: Path) -> dict[str, str]:
    """``NAME=value`` lines as compose reads this project's ``.env`` (no quoting or expansion is used in it)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
