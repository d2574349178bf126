"""``sqlite:///path.db``: embedded and durable on one host (stdlib sqlite3, WAL journal)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from .._exceptions import BackendUnavailable
from .base import Backend, Listener, Stored

_SCHEMA = """
create table if not exists faststate_states (
    key text primary key,
    version integer not null,
    data text not null,
    expires real
)
"""
_EXPIRES_INDEX = "create index if not exists faststate_states_expires on faststate_states (expires)"

#: seconds between two deletes of expired rows (run by the save that finds one due)
PURGE_INTERVAL = 60.0
#: the most expired rows one delete removes (the next save deletes more, if there are)
PURGE_BATCH = 10_000


class SQLiteBackend(Backend):
    """States in one SQLite file. Durable across restarts and hard kills (each save is a
    committed transaction). Live changes reach the streams of this process only: use Redis to
    run several workers."""

    durable = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        #: when a save next deletes expired rows (a read skips them; without the delete the
        #: file would keep a row for every state ever evicted)
        self._purge_due = 0.0

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                conn.execute("pragma journal_mode=wal")
                conn.execute("pragma synchronous=normal")
                conn.execute(_SCHEMA)
                conn.execute(_EXPIRES_INDEX)
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"cannot open {self.path}: {exc}") from exc
            self._conn = conn
        return self._conn

    async def load(self, key: str) -> Stored | None:
        # A local file read is short; a thread hop would cost more than it saves.
        with self._lock:
            try:
                row = (
                    self._db()
                    .execute(
                        "select version, data, expires from faststate_states where key = ?",
                        (key,),
                    )
                    .fetchone()
                )
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"sqlite read failed: {exc}") from exc
        if row is None or (row[2] is not None and row[2] < time.time()):
            return None
        return Stored(int(row[0]), str(row[1]))

    def save_sync(self, key: str, version: int, data: str, ttl: float | None) -> None:
        now = time.time()
        expires = now + ttl if ttl else None
        with self._lock:
            try:
                db = self._db()
                db.execute(
                    "insert into faststate_states (key, version, data, expires) "
                    "values (?, ?, ?, ?) on conflict(key) do update set "
                    "version = excluded.version, data = excluded.data, expires = excluded.expires",
                    (key, version, data, expires),
                )
                if now >= self._purge_due:
                    deleted = db.execute(
                        "delete from faststate_states where rowid in (select rowid from "
                        "faststate_states where expires < ? limit ?)",
                        (now, PURGE_BATCH),
                    ).rowcount
                    # a full batch: more may be left, deleted by the next save
                    self._purge_due = now if deleted >= PURGE_BATCH else now + PURGE_INTERVAL
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"sqlite write failed: {exc}") from exc

    async def save(self, key: str, version: int, data: str, ttl: float | None) -> None:
        # A local file write is short; a thread hop would cost more than it saves.
        self.save_sync(key, version, data, ttl)

    async def delete(self, key: str) -> None:
        with self._lock:
            self._db().execute("delete from faststate_states where key = ?", (key,))

    async def start(self, listener: Listener, origin: str) -> None:
        self._db()  # a path that cannot be opened fails at startup, not at the first request

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await asyncio.sleep(0)


__all__ = ["SQLiteBackend"]
