"""The rehearsal's "RDS": the statements a PostgreSQL server runs to create the master user and initial database
that the template's RDS instance would have. What the master user is (login, password, database) is rendered from
the template by ``mwaa.rehearsal``; this module only turns it into SQL, for the server's superuser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from mwaa import DeployError
from mwaa.rehearsal import MasterUser


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of ``password`` (what libpq's PQencryptPasswordConn computes), so that
    the password itself never reaches the server. Passwords here are ASCII, which SASLprep leaves unchanged."""
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def master_user_sql(master: MasterUser) -> str:
    """The statements RDS runs to create its master user and initial database, for the server's superuser:
    the owner role as devstack.postgres.provision_owner creates it (LOGIN CREATEROLE CREATEDB, no superuser, the
    password as its SCRAM verifier), owning the database. Each statement stands alone (CREATE DATABASE cannot run
    in a transaction)."""
    for name in (master.login, master.database):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise DeployError(f"{name!r} is not a plain PostgreSQL identifier")
    verifier = scram_verifier(master.password)
    return (
        f"create role {master.login} login createrole createdb nosuperuser password '{verifier}';\n"
        f"create database {master.database} owner {master.login};\n"
    )
