"""Amazon MWAA tooling: build the bundle, sync it to the MWAA bucket, deploy and tear down its CloudFormation stack.

Run with the project's virtualenv (``make mwaa-bundle`` / ``mwaa-deploy`` / ``mwaa-upload`` / ``mwaa-teardown``):

    .venv/bin/python -m mwaa bundle                         # build/mwaa/, nothing leaves the machine
    .venv/bin/python -m mwaa deploy --stack retail --alert-email you@example.com
    .venv/bin/python -m mwaa upload --stack retail          # DAG changes: MWAA picks them up by itself
    .venv/bin/python -m mwaa teardown --stack retail

One module per job: ``bundle`` (what MWAA reads, built locally), ``s3`` (syncing it to the bucket, emptying
buckets), ``cloudformation`` (the stack), ``__main__`` (the commands). ``startup.sh.in`` beside them is the
template of the bundle's startup script. The MWAA rehearsal (tests/mwaa) adds ``template`` (the CloudFormation
template evaluated locally), ``rehearsal`` (what a deploy of it makes, provisioned in moto) and
``rehearsal_database`` (its "RDS" master user).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class DeployError(Exception):
    """A failure the user can act on; the message says how."""
