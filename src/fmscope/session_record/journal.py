"""The journal: a small SQLite file (stdlib sqlite3) of the session's identity, its actions and its snapshots.

Each append is one transaction, committed with ``synchronous=FULL`` in WAL mode before :meth:`Journal.append`
returns: a process killed at any moment (SIGKILL, power) leaves every committed action and none in progress.
The connection may be used from several threads (the UI thread records, a worker autosaves); a lock serialises it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from fmscope.errors import FmscopeError
from fmscope.session_record.action import Action
from fmscope.session_record.delta import Delta

JOURNAL_FILE = "journal.sqlite"
FORMAT = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actions (seq INTEGER PRIMARY KEY, action TEXT NOT NULL, bounds TEXT NOT NULL,
                                    pixels BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY, file TEXT NOT NULL);
"""


class Journal:
    """The journal of the session folder ``folder`` (:data:`JOURNAL_FILE` inside)."""

    def __init__(self, folder: str | Path, create: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / JOURNAL_FILE
        if not create and not self.path.is_file():
            raise FmscopeError(
                f"{self.folder} is not an fmscope session folder (no {JOURNAL_FILE} in it).",
                "Give the folder a session was recorded in (napari / Slicer panels, session_record.Recorder).",
            )
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            if create:
                self._db.executescript(_SCHEMA)
            elif self.meta("format") != FORMAT:
                raise FmscopeError(
                    f"{self.path} is a session journal of format {self.meta('format')}, this fmscope reads {FORMAT}.",
                    "Open it with the fmscope version that wrote it.",
                )
        except sqlite3.DatabaseError as error:
            raise FmscopeError(
                f"Cannot read the session journal {self.path} ({error}).",
                "The file is damaged or not an fmscope journal; start a new session in another folder.",
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, statements: list[tuple[str, tuple]]) -> int:
        """Run ``statements`` as one committed transaction; returns the last one's row id."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = 0
                for sql, values in statements:
                    row = self._db.execute(sql, values).lastrowid
                self._db.execute("COMMIT")
                return row
            except sqlite3.Error as error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise FmscopeError(
                    f"Cannot write the session journal {self.path} ({error}).",
                    "Check the session folder is writable and the disk has free space.",
                ) from None

    def _read(self, sql: str, values: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, values).fetchall()
            except sqlite3.DatabaseError as error:
                raise FmscopeError(
                    f"Cannot read the session journal {self.path} ({error}).",
                    "The file is damaged; start a new session in another folder.",
                ) from None

    # -- identity ------------------------------------------------------------------------
    def set_meta(self, values: dict) -> None:
        """Store ``values`` ({key: JSON value}) in one transaction."""
        self._write(
            [("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))) for key, value in values.items()]
        )

    def meta(self, key: str):
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    # -- actions -------------------------------------------------------------------------
    def append(self, action: Action, delta: Delta) -> int:
        """Commit ``action`` with the pixels it changed; returns its sequence number (1, 2, ...)."""
        sql = "INSERT INTO actions (action, bounds, pixels) VALUES (?, ?, ?)"
        return self._write([(sql, (action.to_json(), delta.bounds_json(), delta.values))])

    def actions(self, after: int = 0) -> Iterator[tuple[int, Action, Delta]]:
        """(seq, action, delta) of the committed actions after ``after``, in order."""
        for seq, text, bounds, pixels in self._read(
            "SELECT seq, action, bounds, pixels FROM actions WHERE seq > ? ORDER BY seq", (after,)
        ):
            yield seq, Action.from_json(text), Delta.from_row(bounds, pixels)

    def last_seq(self) -> int:
        return self._read("SELECT COALESCE(MAX(seq), 0) FROM actions")[0][0]

    # -- snapshots -----------------------------------------------------------------------
    def add_snapshot(self, seq: int, file: str) -> None:
        self._write([("INSERT OR REPLACE INTO snapshots VALUES (?, ?)", (seq, file))])

    def latest_snapshot(self) -> tuple[int, str] | None:
        rows = self._read("SELECT seq, file FROM snapshots ORDER BY seq DESC LIMIT 1")
        return (rows[0][0], rows[0][1]) if rows else None
