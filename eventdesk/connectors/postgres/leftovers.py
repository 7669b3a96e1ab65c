"""What EventDesk left in a PostgreSQL database: the replication slots (and their publications)
named ``eventdesk_...`` (settings.py's :func:`object_names`), each with the WAL it holds back
(``pg_current_wal_lsn() - restart_lsn``), whether a session reads it now, and the model of the
workspace whose names it carries; a publication whose slot is gone is listed too. Slots named
for another workspace (another home following the same database) are marked as such.
"""

from __future__ import annotations

import re
from typing import Any

from eventdesk.connectors.postgres.settings import workspace_mark
from eventdesk.core.contracts import LeftOnServer

SLOT = "replication slot + publication"
SLOT_ONLY = "replication slot"
PUBLICATION = "publication"
UNIT = "bytes of WAL"


def owned_by(name: str, mark: str) -> bool:
    """Whether ``name`` is one the workspace of ``mark`` derives: ``eventdesk_<model>_<mark>_<hash>``
    (a name without a mark cannot be told apart from another workspace's)."""
    return bool(mark) and re.fullmatch(rf"eventdesk_.+_{re.escape(mark)}_[0-9a-f]{{8}}", name) is not None


def list_left(conn: Any, workspace_id: str, followed: dict[str, str]) -> list[LeftOnServer]:
    """The EventDesk-named slots of this database (and publications without a slot), sorted:
    this workspace's first; ``followed`` maps a slot name to the model following it."""
    mark = workspace_mark(workspace_id)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT s.slot_name, s.active, "
            "pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
            "ELSE pg_current_wal_lsn() END, s.restart_lsn)::bigint, p.pubname IS NOT NULL "
            "FROM pg_replication_slots s LEFT JOIN pg_publication p ON p.pubname = s.slot_name "
            "WHERE s.database = current_database() AND left(s.slot_name, 10) = 'eventdesk_'"
        )
        slots = cur.fetchall()
        cur.execute(
            "SELECT p.pubname FROM pg_publication p WHERE left(p.pubname, 10) = 'eventdesk_' "
            "AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = p.pubname)"
        )
        lone = [row[0] for row in cur.fetchall()]
    entries = [
        _entry(name, SLOT if has_publication else SLOT_ONLY, held, active, mark, followed)
        for name, active, held, has_publication in slots
    ]
    entries += [_entry(name, PUBLICATION, 0, False, mark, followed) for name in lone]
    return sorted(entries, key=lambda e: (e.other_workspace, e.name))


def _entry(
    name: str, what: str, held: int | None, active: bool, mark: str, followed: dict[str, str]
) -> LeftOnServer:
    return LeftOnServer(
        name=str(name),
        what=what,
        held=None if held is None else int(held),
        unit=UNIT,
        active=bool(active),
        followed_by=followed.get(name),
        other_workspace=not owned_by(name, mark),
    )
