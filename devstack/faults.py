"""A part of the embedded stack that is down or dying, told in one line a user can act on, not a traceback.

The command line and the demo catch ``STACK_ERRORS`` and print ``stack_fault``'s line for them.
"""

from __future__ import annotations

import subprocess

import psycopg
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from devstack.stack import Stack

# What a part of the stack being down or dying looks like to the CLI: reported in one line, not a traceback.
STACK_ERRORS = (
    psycopg.Error,
    BotoCoreError,
    ClientError,
    S3UploadFailedError,
    subprocess.CalledProcessError,
    RuntimeError,  # the stack's own "did not start; see <log>"
)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def stack_fault(stack: Stack, error: BaseException) -> str:
    """Which part of the stack failed, and what to do, in one line."""
    if isinstance(error, subprocess.CalledProcessError) and "pg_ctl" in str(error.cmd):
        return (
            f"PostgreSQL did not start on 127.0.0.1:{stack.state.postgres_port}: {_one_line(error)} "
            f"(see {stack.postgres.log_file}). Try `make down` then the command again."
        )
    if isinstance(error, subprocess.CalledProcessError):  # initdb, and any other command the stack runs
        return f"the embedded stack: {_one_line(error)}"
    if isinstance(error, psycopg.Error) and not isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        # It answered: with an error about what was asked (a missing table, a refused value), not an outage.
        return f"the warehouse refused a query: {_one_line(error)[:300]}"
    if isinstance(error, psycopg.Error):
        where = f"PostgreSQL (127.0.0.1:{stack.state.postgres_port})"
    elif isinstance(error, (BotoCoreError, ClientError, S3UploadFailedError)):
        where = f"S3/SNS (moto, {stack.moto_url})"
    else:
        where = "the embedded stack"
    return f"{where} is not answering: {_one_line(error)[:300]}. Try `make down` then the command again."
