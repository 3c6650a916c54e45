"""``crowdtwist-sandbox``: run the sandbox from a shell, a Makefile or a CI service container.

The ready line ``CrowdTwist sandbox listening on http://127.0.0.1:PORT`` is printed (and flushed) only
once the socket listens, so scripts and ``SandboxProcess`` can wait for it instead of sleeping. With
``--port 0`` the system picks a free port and the line tells which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from airflow_provider_crowdtwist.sandbox.app import SandboxApp
from airflow_provider_crowdtwist.sandbox.faults import (
    ERROR_STATUSES,
    ODD_ANSWERS,
    RATE_LIMIT_MODES,
    FaultSettings,
)
from airflow_provider_crowdtwist.sandbox.http import HttpServer
from airflow_provider_crowdtwist.sandbox.pos_settings import add_pos_arguments, pos_settings_from_args
from airflow_provider_crowdtwist.sandbox.push import RETRY_INTERVAL_S, RETRY_WINDOW_S, PushSettings
from airflow_provider_crowdtwist.sandbox.settings import (
    AUTH_MODES,
    BAD_CREDENTIALS_STATUSES,
    CUSTOM_BOOLEAN_VALUES,
    CUSTOM_TYPE_CHECKS,
    DEFAULT_API_KEY,
    DEFAULT_CUSTOM_ATTRIBUTES,
    DEFAULT_HMAC_PRIVATE_KEY,
    DEFAULT_HMAC_PUBLIC_KEY,
    DELETION_STATUS_PATHS,
    HISTORY_ENVELOPES,
    NULL_VALUES,
    ActivityDef,
    SandboxSettings,
)

HOST = "127.0.0.1"
READY_PREFIX = "CrowdTwist sandbox listening on "
PARENT_POLL_S = 0.25
# Secrets may come from the environment instead of argv, where any local user could read them in `ps`.
SECRET_ENV = {
    "api_key": "CROWDTWIST_SANDBOX_API_KEY",
    "hmac_private_key": "CROWDTWIST_SANDBOX_HMAC_PRIVATE_KEY",
}


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _activity(text: str) -> ActivityDef:
    """``ID=POINTS`` or ``ID=POINTS:inactive``."""
    ident, sep, rest = text.partition("=")
    points_text, _, flag = rest.partition(":")
    if not sep or not ident or not points_text.isdigit() or flag not in ("", "inactive"):
        raise argparse.ArgumentTypeError(f"--activity expects ID=POINTS or ID=POINTS:inactive, got {text!r}")
    return ActivityDef(
        ident, ident.replace("_", " ").capitalize(), int(points_text), is_active=flag != "inactive"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crowdtwist-sandbox",
        description="A local emulator of the CrowdTwist REST API v2 (loopback only), for testing DAGs.",
    )
    p.add_argument(
        "--port", type=int, default=8765, help="port on 127.0.0.1; 0 picks a free one (default 8765)"
    )
    g = p.add_argument_group(
        "authentication",
        f"Keys can also come from the environment ({', '.join(SECRET_ENV.values())}), which keeps them out "
        "of the process list.",
    )
    g.add_argument("--api-key", default=os.environ.get(SECRET_ENV["api_key"], DEFAULT_API_KEY))
    g.add_argument("--hmac-public-key", default=DEFAULT_HMAC_PUBLIC_KEY)
    g.add_argument(
        "--hmac-private-key", default=os.environ.get(SECRET_ENV["hmac_private_key"], DEFAULT_HMAC_PRIVATE_KEY)
    )
    g.add_argument(
        "--auth-modes",
        type=_csv,
        default=AUTH_MODES,
        help="comma-separated: api_key,hmac (default both; a request is judged by what it carries)",
    )
    g.add_argument("--timestamp-window-s", type=float, default=900.0)
    g = p.add_argument_group(
        "readings of the contract's OPEN points (also changeable at runtime: POST /_admin/settings)"
    )
    g.add_argument(
        "--timestamp-unit", choices=("s", "ms"), default="s", help="unit of X-CT-Timestamp (the other: 401)"
    )
    g.add_argument(
        "--bad-credentials-status",
        type=int,
        choices=BAD_CREDENTIALS_STATUSES,
        default=401,
        help="401 auth_error, or 403 forbidden 'Invalid API key'",
    )
    g.add_argument(
        "--deletion-status-path",
        choices=DELETION_STATUS_PATHS,
        default="users/delete",
        help="GET /v2/users/delete/{id} or GET /v2/user_deletion/{id}",
    )
    g.add_argument(
        "--history-envelope",
        choices=HISTORY_ENVELOPES,
        default="list",
        help="activity history as a bare list, or {paging, activities}",
    )
    g.add_argument(
        "--null-values", choices=NULL_VALUES, default="clear", help="a null on update clears or is ignored"
    )
    g.add_argument(
        "--custom-attribute-types",
        choices=CUSTOM_TYPE_CHECKS,
        default="enforced",
        help="a custom_data value of the wrong type is refused, or stored as sent",
    )
    g.add_argument(
        "--custom-boolean-values",
        choices=CUSTOM_BOOLEAN_VALUES,
        default="json",
        help='a boolean custom attribute takes JSON true/false, 1/0, or "true"/"false"',
    )
    g.add_argument(
        "--location-optional",
        action="store_true",
        help="a create without any location is accepted (the 2026-04 release as a secondary source reads "
        "it); default: refused with 'US zip code or country/city combo is required'",
    )
    g.add_argument(
        "--dedupe-window-s",
        type=float,
        default=10.0,
        help="'Event already processed' window; 0 = no duplicate detection at all",
    )
    g.add_argument(
        "--rate-limit-mode",
        choices=RATE_LIMIT_MODES,
        default="bucket",
        help="leaky bucket, or a fixed window of --rate-limit-window-s (with the limit scaled to it)",
    )
    g.add_argument("--rate-limit-window-s", type=float, default=60.0)
    g = p.add_argument_group("program")
    g.add_argument(
        "--custom-attributes",
        type=_csv,
        default=DEFAULT_CUSTOM_ATTRIBUTES,
        help="comma-separated custom_data keys configured for the program, each NAME or NAME:TYPE "
        "(boolean, number, string); '' for none",
    )
    g.add_argument(
        "--activity",
        dest="activities",
        type=_activity,
        action="append",
        help="ID=POINTS[:inactive], repeatable; replaces the default activities",
    )
    g.add_argument("--award-lag-s", type=float, default=0.0, help="credits are applied this much later")
    g.add_argument("--deletion-lag-s", type=float, default=0.0, help="deletions complete this much later")
    g.add_argument("--no-activity-date", action="store_true", help="refuse activity_date on credits")
    g = p.add_argument_group("faults (also changeable at runtime: POST /_admin/faults)")
    g.add_argument("--latency-ms", type=float, default=0.0)
    g.add_argument("--rate-limit-per-minute", type=int, default=0, help="0 = no limit")
    g.add_argument(
        "--rate-limit-burst", type=int, default=None, help="bucket size (default one second's worth)"
    )
    g.add_argument("--no-retry-after", action="store_true", help="answer 429 without a Retry-After header")
    g.add_argument("--error-rate", type=float, default=0.0)
    g.add_argument("--error-status", type=int, choices=ERROR_STATUSES, default=500)
    g.add_argument("--drop-rate", type=float, default=0.0)
    g.add_argument("--applied-then-503-rate", type=float, default=0.0)
    g.add_argument("--applied-then-drop-rate", type=float, default=0.0)
    g.add_argument("--odd-answer-rate", type=float, default=0.0, help="applied, then answered oddly")
    g.add_argument("--odd-answers", type=_csv, default=None, help="from: " + ", ".join(ODD_ANSWERS))
    g.add_argument(
        "--fault-routes",
        type=_csv,
        default=(),
        help="limit drop/error/applied-then-* faults to these endpoints: create,get,update,delete,credit,"
        "activities,extended (default all)",
    )
    g.add_argument("--seed", type=int, default=None)
    add_pos_arguments(p)
    g = p.add_argument_group(
        "live push",
        "Push every changed member profile and every awarded credit, as CrowdTwist does, to these "
        "endpoints (e.g. a crowdtwist-live-push receiver). The push secret comes from the environment.",
    )
    g.add_argument("--push-profile-url", default=None, help="endpoint for member profile pushes")
    g.add_argument("--push-activity-url", default=None, help="endpoint for activity completion pushes")
    auth = g.add_mutually_exclusive_group()
    auth.add_argument("--push-api-key-env", metavar="VAR", help="variable holding the x-api-key to send")
    auth.add_argument("--push-basic-auth-env", metavar="VAR", help="variable holding user:password to send")
    g.add_argument(
        "--push-retry-interval-s", type=float, default=RETRY_INTERVAL_S, help="720 = 5 tries an hour"
    )
    g.add_argument("--push-retry-window-s", type=float, default=RETRY_WINDOW_S, help="28800 = 8 hours")
    g = p.add_argument_group("process")
    g.add_argument("--access-log", action="store_true", help="log each request to stderr (api_key redacted)")
    g.add_argument("--exit-with-parent", type=int, default=None, metavar="PID", help=argparse.SUPPRESS)
    return p


def settings_from_args(args: argparse.Namespace) -> SandboxSettings:
    faults = FaultSettings(
        latency_ms=args.latency_ms,
        rate_limit_per_minute=args.rate_limit_per_minute,
        rate_limit_burst=args.rate_limit_burst,
        rate_limit_mode=args.rate_limit_mode,
        rate_limit_window_s=args.rate_limit_window_s,
        retry_after=not args.no_retry_after,
        error_rate=args.error_rate,
        error_status=args.error_status,
        drop_rate=args.drop_rate,
        applied_then_503_rate=args.applied_then_503_rate,
        applied_then_drop_rate=args.applied_then_drop_rate,
        odd_answer_rate=args.odd_answer_rate,
        odd_answers=tuple(args.odd_answers) if args.odd_answers else ODD_ANSWERS,
        fault_routes=tuple(args.fault_routes),
        seed=args.seed,
    )
    settings = SandboxSettings(
        api_key=args.api_key,
        hmac_public_key=args.hmac_public_key,
        hmac_private_key=args.hmac_private_key,
        auth_modes=tuple(args.auth_modes),
        timestamp_unit=args.timestamp_unit,
        timestamp_window_s=args.timestamp_window_s,
        custom_attributes=tuple(args.custom_attributes),
        dedupe_window_s=args.dedupe_window_s,
        bad_credentials_status=args.bad_credentials_status,
        deletion_status_path=args.deletion_status_path,
        history_envelope=args.history_envelope,
        null_values=args.null_values,
        custom_attribute_types=args.custom_attribute_types,
        custom_boolean_values=args.custom_boolean_values,
        location_optional=args.location_optional,
        award_lag_s=args.award_lag_s,
        deletion_lag_s=args.deletion_lag_s,
        activity_date_enabled=not args.no_activity_date,
        faults=faults,
        push=push_settings_from_args(args),
        pos=pos_settings_from_args(args),
        **({"activities": tuple(args.activities)} if args.activities else {}),
    )
    settings.validate()
    return settings


def _secret_from_env(variable: str | None, flag: str) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"environment variable {variable} ({flag}) is not set")
    return value


def push_settings_from_args(args: argparse.Namespace) -> PushSettings:
    return PushSettings(
        profile_url=args.push_profile_url,
        activity_url=args.push_activity_url,
        api_key=_secret_from_env(args.push_api_key_env, "--push-api-key-env"),
        basic_auth=_secret_from_env(args.push_basic_auth_env, "--push-basic-auth-env"),
        retry_interval_s=args.push_retry_interval_s,
        retry_window_s=args.push_retry_window_s,
    )


async def serve(settings: SandboxSettings, port: int, access_log: bool, parent_pid: int | None) -> None:
    app = SandboxApp(settings, access_log_enabled=access_log)
    http = HttpServer(app)
    bound = await http.start(HOST, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / platform
            loop.add_signal_handler(signum, stop.set)
    if parent_pid is not None:
        # The child outlives nothing: when the process that started it is gone (killed, crashed test
        # session), getppid() changes and the sandbox exits instead of holding its port forever.
        def watch_parent() -> None:
            if os.getppid() != parent_pid:
                stop.set()
            else:
                loop.call_later(PARENT_POLL_S, watch_parent)

        watch_parent()
    print(f"{READY_PREFIX}http://{HOST}:{bound}", flush=True)
    await stop.wait()
    await http.close()
    app.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"crowdtwist-sandbox: invalid setting: {exc}", file=sys.stderr)
        return 2
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        asyncio.run(serve(settings, args.port, args.access_log, args.exit_with_parent))
    except OSError as exc:
        print(
            f"crowdtwist-sandbox: cannot listen on {HOST}:{args.port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0
