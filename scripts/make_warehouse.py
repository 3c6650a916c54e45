"""Make a small, realistic sample warehouse for the demo and the end-to-end tests.

Two tables, the shape a data team typically keeps before it syncs into CrowdTwist:

* ``members``: one row per loyalty member, keyed by email (CrowdTwist ``id_type=email``), with a name,
  a location (US postal code, Canada country + postal code, or elsewhere country + city), a date of
  birth and the program's custom attributes.
* ``events``: points-earning events (orders, sign-ups, reviews, birthdays) with an ``event_id`` that
  is the dedupe key of the credit, spread over the days before ``--end-date``.

The data is realistic on purpose: a few rows are broken the way real warehouses are broken (an email
without a domain, a US member without a postal code, a name with characters CrowdTwist refuses, an
event for an activity the program does not have, a member listed twice). The demo and the tests check
that each of those ends in its own clear outcome instead of failing the whole sync.

Everything is drawn from one seeded ``random.Random`` and the given end date, so the same arguments
always give the same rows; the e2e tests rely on that to load identical data into SQLite and
PostgreSQL.

Usage::

    python scripts/make_warehouse.py --db .demo/warehouse.db --members 3000 --events 6000
    python scripts/make_warehouse.py --members-csv /tmp/members.csv --members 100
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The sandbox's default program (airflow_provider_crowdtwist.sandbox) has these activities and custom
# attribute keys configured; the sample data only uses them, except where a bad row is intended.
ACTIVITIES = ("purchase", "signup", "review", "birthday")
UNKNOWN_ACTIVITY = "refer_a_friend"
STORES = ("Downtown", "Riverside", "Airport", "Mall of the North", "Harbour Front", "Online")
SEGMENTS = ("bronze", "silver", "gold", "platinum")
CHANNELS = ("email", "sms", "push", "none")

FIRST_NAMES = (
    "Ava", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sofia", "Lucas", "Mia", "Ethan", "Zoe",
    "Amara", "Kenji", "Priya", "Omar", "Chloe", "Jean-Luc", "Siobhan", "Aleksander", "Nia",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Garcia", "Nguyen", "Okafor", "Muller", "Rossi", "Tanaka", "Patel", "O\u2019Brien",
    "Kowalski", "Dubois", "Silva", "Haddad", "Johansson", "Kim", "Lopez", "Baker", "Singh", "O'Neil",
)  # fmt: skip
US_ZIPS = ("10001", "94105", "60614", "73301", "98101", "02139", "30303", "80202-1234", "331011234")
CA_POSTAL = ("M5V 2T6", "H2X 1Y4", "V6B 4Y8", "T2P 1J9", "K1P 5J2")
ELSEWHERE = (("GB", "London"), ("FR", "Paris"), ("DE", "Berlin"), ("JP", "Tokyo"), ("BR", "Recife"))

MEMBER_COLUMNS = (
    "user_id", "first_name", "last_name", "postal_code", "country_code", "city_name",
    "date_of_birth", "receive_email_updates", "favorite_store", "loyalty_segment",
    "preferred_channel", "lifetime_value", "updated_at",
)  # fmt: skip
EVENT_COLUMNS = ("event_id", "user_email", "activity_id", "points", "event_time", "store")

# How many rows of each kind of defect the generator plants (for members: at most these numbers,
# for small tables fewer). The e2e tests read these to know what to expect.
BAD_EMAIL_EVERY = 97  # every 97th member has an email with no domain
NO_POSTAL_EVERY = 89  # every 89th member is in the US with no postal code
BAD_NAME_EVERY = 211  # every 211th member has characters CrowdTwist refuses in the first name
UNKNOWN_ACTIVITY_EVERY = 151  # every 151st event names an activity the program does not have


def _member(rng: random.Random, index: int, end: dt.datetime) -> dict[str, Any]:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    local = f"{first}.{last}.{index}".lower().replace("\u2019", "").replace(" ", "")
    email = f"{local}@example.com" if index % 5 else f"{local}+loyalty@example.org"
    where = rng.random()
    postal: str | None
    country: str | None
    city: str | None
    if where < 0.7:
        postal, country, city = rng.choice(US_ZIPS), "US", None
    elif where < 0.85:
        postal, country, city = rng.choice(CA_POSTAL), "CA", None
    else:
        country, city = rng.choice(ELSEWHERE)
        postal = None
    born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 55))
    row: dict[str, Any] = {
        "user_id": email,
        "first_name": first,
        "last_name": last,
        "postal_code": postal,
        "country_code": country,
        "city_name": city,
        "date_of_birth": born.isoformat() if rng.random() < 0.9 else None,
        "receive_email_updates": int(rng.random() < 0.6),
        "favorite_store": rng.choice(STORES),
        "loyalty_segment": rng.choice(SEGMENTS),
        "preferred_channel": rng.choice(CHANNELS),
        "lifetime_value": round(rng.uniform(0, 5000), 2),
        "updated_at": (end - dt.timedelta(minutes=rng.randrange(1, 60 * 24 * 30))).strftime(
            "%Y-%m-%d %H:%M:%S"
        ),
    }
    # Planted defects, at fixed positions so that the counts are predictable.
    if index % BAD_EMAIL_EVERY == 13:
        row["user_id"] = f"{local}@"  # broken email: no domain
    elif index % NO_POSTAL_EVERY == 7:
        row["postal_code"], row["country_code"], row["city_name"] = None, "US", None
    elif index % BAD_NAME_EVERY == 5:
        row["first_name"] = f"{first}!!<script>"
    return row


def generate_members(count: int, *, seed: int = 42, end: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Members, with planted defects and one member listed twice (the later row wins in a sync)."""
    rng = random.Random(seed)
    end = end or _default_end()
    rows = [_member(rng, i, end) for i in range(count)]
    if count >= 10:
        # A warehouse that lists a member twice (say, after an address change): same user_id.
        # The later row (by updated_at) is the current one: a query ordered by updated_at puts it last,
        # and a sync resolves duplicates last-wins.
        twin = dict(rows[3])
        twin["city_name"], twin["postal_code"], twin["country_code"] = None, "10001", "US"
        twin["updated_at"] = end.strftime("%Y-%m-%d %H:%M:%S")
        rows.append(twin)
    return rows


def generate_events(
    members: Sequence[dict[str, Any]],
    count: int,
    *,
    seed: int = 42,
    end: dt.datetime | None = None,
    days: int = 7,
) -> list[dict[str, Any]]:
    """Events of valid members over the ``days`` before ``end`` (UTC), a few planted defects."""
    rng = random.Random(seed + 1)
    end = end or _default_end()
    # Only members the sync accepts earn events: a credit for a rejected member would fail with
    # "User does not exist", which is a different lesson than the one each planted defect teaches.
    good = sorted({m["user_id"] for m in members if _is_clean(m)})
    if not good:
        return []
    span = days * 24 * 3600
    rows: list[dict[str, Any]] = []
    for i in range(count):
        activity = rng.choices(ACTIVITIES, weights=(70, 10, 15, 5))[0]
        points = rng.randrange(5, 500) if activity == "purchase" else None
        when = end - dt.timedelta(seconds=rng.randrange(1, span))
        row = {
            "event_id": f"evt-{i:06d}",
            "user_email": rng.choice(good),
            "activity_id": activity,
            "points": points,
            "event_time": when.strftime("%Y-%m-%d %H:%M:%S"),
            "store": rng.choice(STORES),
        }
        if i % UNKNOWN_ACTIVITY_EVERY == 17:
            row["activity_id"] = UNKNOWN_ACTIVITY
        rows.append(row)
    return rows


def _is_clean(member: dict[str, Any]) -> bool:
    """True for members without a planted defect (mirrors the defects :func:`_member` plants)."""
    local, _, domain = member["user_id"].partition("@")
    if not local or "." not in domain:
        return False
    if member["country_code"] == "US" and not member["postal_code"]:
        return False
    return "!" not in member["first_name"]


def _default_end() -> dt.datetime:
    """Midnight UTC at the start of today: events fall in whole past days, like a daily schedule."""
    now = dt.datetime.now(dt.timezone.utc)
    return dt.datetime(now.year, now.month, now.day)


def write_sqlite(path: Path, members: Sequence[dict], events: Sequence[dict]) -> None:
    """(Re)create ``members`` and ``events`` in a SQLite file; columns stay untyped text/numbers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        con.executescript(
            """
            DROP TABLE IF EXISTS members;
            DROP TABLE IF EXISTS events;
            CREATE TABLE members (
                user_id TEXT, first_name TEXT, last_name TEXT, postal_code TEXT, country_code TEXT,
                city_name TEXT, date_of_birth TEXT, receive_email_updates INTEGER,
                favorite_store TEXT, loyalty_segment TEXT, preferred_channel TEXT,
                lifetime_value REAL, updated_at TEXT
            );
            CREATE TABLE events (
                event_id TEXT PRIMARY KEY, user_email TEXT, activity_id TEXT, points INTEGER,
                event_time TEXT, store TEXT
            );
            CREATE INDEX events_time ON events (event_time);
            """
        )
        con.executemany(
            f"INSERT INTO members VALUES ({', '.join('?' * len(MEMBER_COLUMNS))})",
            [tuple(m[c] for c in MEMBER_COLUMNS) for m in members],
        )
        con.executemany(
            f"INSERT INTO events VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
            [tuple(e[c] for c in EVENT_COLUMNS) for e in events],
        )
        con.commit()
    finally:
        con.close()


def write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """A CSV export, as a warehouse unload to object storage would produce it (empty = NULL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: ("" if row[c] is None else row[c]) for c in columns})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="SQLite file to (re)create with members and events")
    parser.add_argument("--members-csv", type=Path, help="also write the members as CSV here")
    parser.add_argument("--events-csv", type=Path, help="also write the events as CSV here")
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--days", type=int, default=7, help="events spread over this many days")
    parser.add_argument(
        "--end-date",
        type=dt.date.fromisoformat,
        help="events fall before midnight UTC of this day (default: today)",
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if not (args.db or args.members_csv or args.events_csv):
        parser.error("give at least one of --db, --members-csv, --events-csv")

    end = (
        dt.datetime(args.end_date.year, args.end_date.month, args.end_date.day)
        if args.end_date
        else _default_end()
    )
    members = generate_members(args.members, seed=args.seed, end=end)
    events = generate_events(members, args.events, seed=args.seed, end=end, days=args.days)
    if args.db:
        write_sqlite(args.db, members, events)
    if args.members_csv:
        write_csv(args.members_csv, members, MEMBER_COLUMNS)
    if args.events_csv:
        write_csv(args.events_csv, events, EVENT_COLUMNS)
    print(
        f"warehouse: {len(members)} members, {len(events)} events over {args.days} days "
        f"before {end:%Y-%m-%d} (seed {args.seed})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
