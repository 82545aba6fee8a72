"""What the embedded stack keeps across restarts (ports and generated passwords), and how ports are chosen."""

from __future__ import annotations

import json
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

UI_PORT = 8080
STATE_FILE = "state.json"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _password() -> str:
    return secrets.token_urlsafe(18)


def _jwt_secret() -> str:
    """64 random bytes: PyJWT warns on a shorter HMAC key for the SHA-512 the API signs with."""
    return secrets.token_urlsafe(64)


def _ui_port() -> int:
    """8080, as users expect, unless something else listens there."""
    return UI_PORT if not port_open(UI_PORT) else free_port()


@dataclass
class StackState:
    """What must stay the same across restarts: ports and generated passwords (``<home>/state.json``)."""

    postgres_port: int = field(default_factory=free_port)
    moto_port: int = field(default_factory=free_port)
    superuser_password: str = field(default_factory=_password)
    owner_password: str = field(default_factory=_password)
    loader_password: str = field(default_factory=_password)
    transformer_password: str = field(default_factory=_password)
    api_port: int = field(default_factory=_ui_port)
    admin_password: str = field(default_factory=_password)
    jwt_secret: str = field(default_factory=_jwt_secret)
    worker_log_port: int = field(default_factory=free_port)
    trigger_log_port: int = field(default_factory=free_port)
    trigger: str = "sensor"  # how uploads are detected (include/retail/detect/trigger.py): `make up TRIGGER=events`

    @classmethod
    def load_or_create(cls, home: Path) -> StackState:
        """Read the state, filling in (and saving) whatever an older version of it lacks."""
        path = home / STATE_FILE
        known = json.loads(path.read_text()) if path.exists() else {}
        state = cls(**{name: value for name, value in known.items() if name in cls.__dataclass_fields__})
        if state.__dict__ != known:
            state.save(home)
        return state

    def save(self, home: Path) -> None:
        path = home / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(self.__dict__, indent=2))
