"""Local stand-ins for the official images docker-compose.yaml names, for machines that reach no image registry.

The compose test runs the project's real docker-compose.yaml and Dockerfile; only the images they start from are
swapped, by ``docker-compose.standins.yaml``, for images built here: a Debian 12 base made with debootstrap and
``docker import``, then one stand-in per official image (``standins/<name>/Dockerfile`` says what each mirrors
and where it differs). Each image carries a label with the digest of what it was built from, so a machine builds
them once and rebuilds only what changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OVERRIDE_FILE = HERE / "docker-compose.standins.yaml"
STANDINS = HERE / "standins"
MWAA_PINS = REPO.parent / "shared" / "mwaa"
MWAA_CONSTRAINTS = MWAA_PINS / "airflow-3.3.1-constraints-py3.12.txt"
MWAA_ESSENTIAL_CONSTRAINTS = MWAA_PINS / "mwaa-3.3.1-essential-constraints.txt"
# The machine's trust store: pip and uv inside the builds go through its TLS-inspecting proxy.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DIGEST_LABEL = "org.retail-pipeline.standin-digest"
BASE_IMAGE = "retail-standin/debian:bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Standin:
    name: str  # its folder under standins/
    tag: str
    official: str  # the image of docker-compose.yaml it stands in for


IMAGES = (
    Standin("airflow", "retail-standin/airflow:3.3.1-python3.12", "apache/airflow:3.3.1-python3.12"),
    Standin("postgres", "retail-standin/postgres:16", "postgres:16"),
    Standin("moto", "retail-standin/moto:5.2.5", "motoserver/moto:5.2.5"),
    Standin("redis", "retail-standin/redis:7.2-bookworm", "redis:7.2-bookworm"),
    # Amazon MWAA's runtime, for the rehearsal of a deployment (tests/mwaa): no image of it is published.
    Standin("mwaa", "retail-standin/mwaa:3.3.1", "Amazon MWAA 3.3.1 (aws/amazon-mwaa-docker-images)"),
)
# Stand-ins whose build context gets this machine's CPython 3.12 (as python/) and Airflow's constraints.
PYTHON_IMAGES = {"airflow", "mwaa"}


class StandinBuildError(RuntimeError):
    pass


def ensure_images(docker: str = "docker") -> None:
    """Build the Debian base and every stand-in that is missing or out of date; a no-op when all are current."""
    base_digest = _digest(_debian_mirror().encode(), HOST_CA_BUNDLE.read_bytes())
    if _label(docker, BASE_IMAGE) != base_digest:
        _build_base(docker, base_digest)
    for standin in IMAGES:
        folder = STANDINS / standin.name
        files = sorted(path for path in folder.rglob("*") if path.is_file())
        inputs = [base_digest.encode(), *(_file_bytes(path, folder) for path in files)]
        if standin.name in PYTHON_IMAGES:
            inputs += [_python312().encode(), MWAA_CONSTRAINTS.read_bytes()]
        if standin.name == "mwaa":
            inputs.append(MWAA_ESSENTIAL_CONSTRAINTS.read_bytes())
        digest = _digest(*inputs)
        if _label(docker, standin.tag) != digest:
            _build_standin(docker, standin, digest)


def _build_base(docker: str, digest: str) -> None:
    """debootstrap a minimal Debian 12 and import it, trusting the machine's CA bundle as the machine does."""
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise StandinBuildError(f"{BASE_IMAGE} is missing and building it needs root and debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="retail-standin-base-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), _debian_mirror()], "debootstrap")
        # Kept where Debian's update-ca-certificates merges it back if an image installs ca-certificates.
        extra = rootfs / "usr/local/share/ca-certificates/build-host-bundle.crt"
        extra.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA_BUNDLE, extra)
        bundle = rootfs / "etc/ssl/certs/ca-certificates.crt"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA_BUNDLE, bundle)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            "ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
            f"LABEL {DIGEST_LABEL}={digest}",
            'CMD ["bash"]',
        ]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        command = [docker, "import", *(arg for change in changes for arg in ("--change", change)), "-", BASE_IMAGE]
        imported = subprocess.run(command, stdin=tar.stdout, capture_output=True, text=True, check=False)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise StandinBuildError(f"docker import of {BASE_IMAGE} failed: {imported.stderr.strip()}")
    _say(f"built {BASE_IMAGE} in {time.monotonic() - started:.0f} s")


def _build_standin(docker: str, standin: Standin, digest: str) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"retail-standin-{standin.name}-") as scratch:
        context = Path(scratch)
        shutil.copytree(STANDINS / standin.name, context, dirs_exist_ok=True, symlinks=True)
        if standin.name in PYTHON_IMAGES:
            _copy_python(Path(_python312()), context / "python")
            shutil.copyfile(MWAA_CONSTRAINTS, context / "constraints.txt")
        if standin.name == "mwaa":
            shutil.copyfile(MWAA_ESSENTIAL_CONSTRAINTS, context / "mwaa_essential_constraints.txt")
        command = [docker, "build", "--quiet", "--label", f"{DIGEST_LABEL}={digest}", "-t", standin.tag, str(context)]
        _run(command, f"docker build of {standin.tag}", env={**os.environ, "DOCKER_BUILDKIT": "0"})
    _say(f"built {standin.tag} (stands in for {standin.official}) in {time.monotonic() - started:.0f} s")


def _copy_python(interpreter: Path, target: Path) -> None:
    """The machine's CPython 3.12 installation, without its tests, IDLE/Tk or whatever was pip-installed into it."""
    prefix = interpreter.resolve().parents[1]
    stdlib = Path("lib") / "python3.12"
    skip = {stdlib / "test", stdlib / "idlelib", stdlib / "tkinter", stdlib / "turtledemo", stdlib / "site-packages"}

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(prefix)
        return {name for name in names if relative / name in skip or name == "__pycache__"}

    shutil.copytree(prefix, target, symlinks=True, ignore=ignore)
    (target / stdlib / "site-packages").mkdir()
    # pip comes back with `python -m ensurepip`, from the wheel the standard library bundles.
    _run([str(target / "bin" / "python3.12"), "-m", "ensurepip", "--default-pip"], "ensurepip")


def _python312() -> str:
    return subprocess.run(
        [str(REPO / "scripts" / "find-python312")], capture_output=True, text=True, check=True
    ).stdout.strip()


def _debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap fetches from it), or Debian's default one."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text(errors="replace") if source.is_file() else ""
        match = re.search(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s", text)
        if match:
            return match[1]
    return DEFAULT_MIRROR


def _label(docker: str, image: str) -> str | None:
    result = subprocess.run(
        [docker, "image", "inspect", "--format", f'{{{{index .Config.Labels "{DIGEST_LABEL}"}}}}', image],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _file_bytes(path: Path, folder: Path) -> bytes:
    """A file's name, mode and content: an entrypoint that loses its executable bit is a different image."""
    return f"{path.relative_to(folder)} {path.stat().st_mode & 0o777:o}\n".encode() + path.read_bytes()


def _run(command: list[str], what: str, *, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise StandinBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _say(message: str) -> None:
    print(f"[standins] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    ensure_images()
