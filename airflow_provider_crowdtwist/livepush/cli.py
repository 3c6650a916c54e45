"""``crowdtwist-live-push serve``: the live push receiver as a command.

Secrets come from environment variables named on the command line (``--api-key-env VAR``), never from
argv itself, where every local user can read them with ``ps``. The ready line is printed once the socket
listens; with ``--port 0`` it tells the chosen port.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_crowdtwist.livepush.app import LivePushApp
from airflow_provider_crowdtwist.livepush.auth import AuthConfigError, PushAuth
from airflow_provider_crowdtwist.livepush.server import HEADER_TIMEOUT_S, run
from airflow_provider_crowdtwist.livepush.settings import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    ReceiverSettings,
)
from airflow_provider_crowdtwist.livepush.store import RollPolicy

PROG = "crowdtwist-live-push"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Receive CrowdTwist live pushes into JSON-lines files."
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the receiver: POST /push/profile and POST /push/activity")
    s.add_argument("--port", type=int, required=True, help="TCP port; 0 picks a free one")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument(
        "--output", required=True, help="directory or object-storage URL; files land under OUTPUT/<feed>/"
    )
    s.add_argument(
        "--spool-dir",
        type=Path,
        default=None,
        help="local directory for the open files (default OUTPUT/_spool; required for object storage)",
    )
    auth = s.add_mutually_exclusive_group()
    auth.add_argument("--basic-auth-env", metavar="VAR", help="variable holding user:password (Basic auth)")
    auth.add_argument("--api-key-env", metavar="VAR", help="variable holding the x-api-key value")
    s.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    s.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S, help="seconds (408 after)")
    s.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT_S, help="seconds for the headers")
    s.add_argument("--roll-bytes", type=int, default=RollPolicy.max_bytes, help="roll a file at this size")
    s.add_argument("--roll-seconds", type=float, default=RollPolicy.max_seconds, help="roll at this age")
    s.add_argument(
        "--third-party-id-field",
        metavar="PATH",
        default=None,
        help="answer profile pushes with third_party_id taken from this profile field (dotted path); "
        "only without authentication, as CrowdTwist requires",
    )
    # benchmark baselines only: no durability, or one fsync per push
    s.add_argument("--no-fsync", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--max-batch", type=int, default=0, help=argparse.SUPPRESS)
    s.add_argument("--exit-with-parent", type=int, default=None, metavar="PID", help=argparse.SUPPRESS)
    return p


def settings_from_args(args: argparse.Namespace) -> ReceiverSettings:
    auth = PushAuth.from_env(basic_auth_env=args.basic_auth_env, api_key_env=args.api_key_env)
    settings = ReceiverSettings(
        output=args.output,
        auth=auth,
        spool_dir=args.spool_dir,
        roll=RollPolicy(
            max_bytes=args.roll_bytes,
            max_seconds=args.roll_seconds,
            fsync=not args.no_fsync,
            max_batch=args.max_batch,
        ),
        max_body_bytes=args.max_body_bytes,
        body_timeout_s=args.body_timeout,
        third_party_id_field=args.third_party_id_field,
    )
    settings.validate()
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        settings = settings_from_args(args)
        app = LivePushApp(settings)
    except (AuthConfigError, ValueError) as exc:
        print(f"{PROG}: invalid setting: {exc}", file=sys.stderr)
        return 2
    try:
        return run(
            app,
            args.host,
            args.port,
            header_timeout_s=args.header_timeout,
            parent_pid=args.exit_with_parent,
        )
    except OSError as exc:
        print(f"{PROG}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
