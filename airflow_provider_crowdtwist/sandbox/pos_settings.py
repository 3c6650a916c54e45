"""The POS host's settings: each OPEN point of the contract a switch, the emulator's reading its default.

``crowdtwist-api.md`` ("The POS host", OPEN 1-9) lists what no public page settles; the sandbox serves
every reading so the syncs can be tested under each. Overridden as ``pos_<name>`` (``SandboxServer(
pos_duplicate_status=409)``, ``POST /_admin/settings``) or ``--pos-<name>`` on the command line.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

_CURRENCY = re.compile(r"^[A-Z]{3}$")

# The readings of the OPEN points (crowdtwist-api.md, "The POS host", OPEN 1-9).
DUPLICATE_STATUSES = (400, 409, 200)  # OPEN 1; 200 replays the first answer
ROUNDINGS = ("natural", "up", "down")  # OPEN 2 (OU:CommerceConfiguration)
ROUNDING_SCOPES = ("line", "receipt")  # OPEN 2
PRICE_MEANINGS = ("unit", "line")  # OPEN 2: price per unit, or the line's amount
ANSWERS = ("items", "fulfillment", "empty")  # OPEN 3
RETURN_EXCESS = ("cap", "refuse")  # OPEN 4: a return beyond the purchase is capped per SKU, or refused
NEGATIVE_BALANCES = ("allow", "floor")  # OPEN 4: a balance may go below zero, or stops at zero
UNKNOWN_USERS = ("reject", "store")  # OPEN 5
NOT_FOUND_STATUSES = (404, 400)  # OPEN 6
SECOND_VOIDS = ("not_found", "replay")  # OPEN 6: a second void of one return
VOIDED_IDS = ("taken", "free")  # OPEN 6: whether a voided return_id may be used again
REFUSED_AUTH_STATUSES = (401, 403)  # OPEN 7
ITEMS_REQUIRED = ("required", "optional")  # OPEN 8
INACTIVE_MEMBERS = ("award", "refuse")  # OPEN 9
NON_MEMBER_RETURN_TYPES = (4, 5, 9)  # O:Return refuses non-members for these (CT lists 4 and 9)


@dataclass(frozen=True)
class PosSettings:
    """The POS host's readings; overridden as ``pos_<name>`` (``SandboxServer(pos_duplicate_status=409)``)."""

    duplicate_status: int = 400
    rounding: str = "natural"
    rounding_scope: str = "line"
    price_is: str = "unit"
    points_per_unit: float = 1.0
    answer: str = "items"
    return_excess: str = "cap"
    negative_balance: str = "allow"
    unknown_user: str = "reject"
    not_found_status: int = 404
    second_void: str = "not_found"
    voided_return_id: str = "taken"
    refused_auth_status: int = 401
    items: str = "required"
    inactive_member: str = "award"
    currencies: tuple[str, ...] = ("USD",)

    def validate(self) -> None:
        for name, allowed in (
            ("duplicate_status", DUPLICATE_STATUSES),
            ("rounding", ROUNDINGS),
            ("rounding_scope", ROUNDING_SCOPES),
            ("price_is", PRICE_MEANINGS),
            ("answer", ANSWERS),
            ("return_excess", RETURN_EXCESS),
            ("negative_balance", NEGATIVE_BALANCES),
            ("unknown_user", UNKNOWN_USERS),
            ("not_found_status", NOT_FOUND_STATUSES),
            ("second_void", SECOND_VOIDS),
            ("voided_return_id", VOIDED_IDS),
            ("refused_auth_status", REFUSED_AUTH_STATUSES),
            ("items", ITEMS_REQUIRED),
            ("inactive_member", INACTIVE_MEMBERS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"pos_{name} must be one of {allowed}, got {getattr(self, name)!r}")
        rate = self.points_per_unit
        if (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate < 0
        ):
            raise ValueError(f"pos_points_per_unit must be a number >= 0, got {rate!r}")
        if not isinstance(self.currencies, tuple) or any(
            not _CURRENCY.match(str(c)) for c in self.currencies
        ):
            raise ValueError(f"pos_currencies must be ISO-4217 codes, got {self.currencies!r}")

    def readings(self) -> dict[str, Any]:
        return {f"pos_{k}": v for k, v in asdict(self).items()}


#: Every ``pos_*`` name ``POST /_admin/settings`` may switch on a running sandbox.
POS_RUNTIME_SETTINGS = tuple(f"pos_{name}" for name in PosSettings.__dataclass_fields__)


# ---- the command line (``crowdtwist-sandbox --pos-...``) ------------------------------------------

_CHOICE_FLAGS: tuple[tuple[str, tuple[Any, ...], str], ...] = (
    (
        "duplicate_status",
        DUPLICATE_STATUSES,
        "OPEN 1: a repeated receipt_id/return_id; 200 replays the first answer",
    ),
    ("rounding", ROUNDINGS, "OPEN 2: natural (half up), always up, always down"),
    ("rounding_scope", ROUNDING_SCOPES, "OPEN 2: round each line, or the receipt's sum"),
    ("price_is", PRICE_MEANINGS, "OPEN 2: price per unit (times quantity), or the line's amount"),
    ("answer", ANSWERS, "OPEN 3: Fulfillment-like plus items, Fulfillment-like, or {}"),
    ("return_excess", RETURN_EXCESS, "OPEN 4: a return beyond the purchase is capped per SKU, or refused"),
    ("negative_balance", NEGATIVE_BALANCES, "OPEN 4: a return may take a balance below zero, or not"),
    ("unknown_user", UNKNOWN_USERS, "OPEN 5: a purchase for an unknown user_id is refused, or stored"),
    ("not_found_status", NOT_FOUND_STATUSES, "OPEN 6: the status of an unknown receipt or return"),
    ("second_void", SECOND_VOIDS, "OPEN 6: a second void is not found, or answered as the first"),
    ("voided_return_id", VOIDED_IDS, "OPEN 6: a voided return_id stays taken, or is free again"),
    ("refused_auth_status", REFUSED_AUTH_STATUSES, "OPEN 7: the status of HMAC or a query key"),
    ("items", ITEMS_REQUIRED, "OPEN 8: whether a purchase needs items"),
    (
        "inactive_member",
        INACTIVE_MEMBERS,
        "OPEN 9: an inactive member's purchase awards points, or is refused",
    ),
)


def add_pos_arguments(parser: Any) -> None:
    """The ``--pos-*`` flags: every OPEN point of the POS host, defaulting to the emulator's reading."""
    defaults = PosSettings()
    group = parser.add_argument_group(
        "POS host readings (served under /pos; also changeable at runtime: POST /_admin/settings pos_*)"
    )
    for name, choices, text in _CHOICE_FLAGS:
        kind = int if isinstance(choices[0], int) else str
        group.add_argument(
            f"--pos-{name.replace('_', '-')}",
            type=kind,
            choices=choices,
            default=getattr(defaults, name),
            help=f"{text} (default {getattr(defaults, name)})",
        )
    group.add_argument(
        "--pos-points-per-unit",
        type=float,
        default=defaults.points_per_unit,
        help="OPEN 2: points per unit of currency (default 1)",
    )
    group.add_argument(
        "--pos-currencies",
        default=",".join(defaults.currencies),
        help="ISO-4217 codes configured for the program, comma-separated (default USD)",
    )


def pos_settings_from_args(args: Any) -> PosSettings:
    values = {name: getattr(args, f"pos_{name}") for name, _, _ in _CHOICE_FLAGS}
    codes = tuple(c.strip() for c in args.pos_currencies.split(",") if c.strip())
    return PosSettings(**values, points_per_unit=args.pos_points_per_unit, currencies=codes)
