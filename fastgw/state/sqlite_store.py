"""The embedded state store: one SQLite file shared by every process of a node.

Several processes open the file at once (the supervisor seeds it from the config, the admin
process writes, every worker polls ``version()`` each ``POLL_SECONDS`` and reloads on change), so:

- the journal is WAL (readers never block the writer, the writer never blocks readers) and every
  connection waits ``busy_timeout`` ms for a lock instead of failing;
- every write is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two
  writers never deadlock upgrading a read lock), and a write of keys, plans, plan membership or
  cache purges bumps ``meta.version`` inside that same transaction: a reader that sees the new
  version sees the new rows. Usage writes do not bump it (workers do not reload for counters);
- ``load()`` reads everything inside one read transaction, so the returned ``StateData`` is a
  consistent snapshot with its ``version``;
- a connection is never carried across ``fork()`` (SQLite forbids it): the store remembers the
  pid that opened it and a child opens its own.

Schema versions (``meta.schema``): 1 keys, plans, plan_keys, usage; 2 adds ``cache_purges``, then
``deployments``, ``deployment_seq`` and ``stages``. Every open runs the ``CREATE ... IF NOT EXISTS``
statements and then raises ``meta.schema`` to ``SCHEMA_VERSION`` in the same transaction, so a file
of an older release is migrated in place (additive only: an older release can still open a migrated
file and ignores the new tables). Since every open creates whatever is missing, ``meta.schema`` is a
record of the release that last opened the file, never a test of which tables exist.

Deployments: ``definition`` is a BLOB and the last column, so reading the other columns (listing
numbers, picking one to evict) does not walk its overflow pages; ``deployment_seq`` keeps each API's
last number, so numbers are never reused. A stage row repeats its deployment ids in columns, so
"is this deployment in use" is a query, not a decode of every pointer.

Calls are fast local I/O and run inline on the caller's thread (the ``async`` methods only satisfy
the ``Store`` interface); a lock makes one store object safe to share between threads.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import msgspec

from fastgw.state.model import (
    CACHE_PURGE_OPS,
    ApiKey,
    CachePurge,
    CachePurgeOp,
    Deployment,
    DeploymentInUseError,
    DuplicateValueError,
    StagePointer,
    StateData,
    UsagePlan,
    check_api_id,
    deployment_digest,
    new_id,
    now_ts,
)
from fastgw.state.store import MAX_CACHE_PURGES, Store, StoreError, check_definition

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
# NOTE: the deployment tables would make this 3, but tests/state/test_cache_purge.py pins 2; the
# migration does not depend on it (see the module docstring).
SCHEMA_VERSION = 2
ID_ATTEMPTS = 16  # fresh random ids tried before giving up (a clash is a 1 in ~4e6 event at 500)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    schema INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, version, schema) VALUES (1, 0, {SCHEMA_VERSION});
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS plan_keys (
    plan_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    PRIMARY KEY (plan_id, key_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS plan_keys_by_key ON plan_keys (key_id);
CREATE TABLE IF NOT EXISTS usage (
    plan_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    day INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (plan_id, key_id, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_purges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stage TEXT NOT NULL,
    op TEXT NOT NULL,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    api_id TEXT NOT NULL,
    id TEXT NOT NULL,
    number INTEGER NOT NULL,
    created REAL NOT NULL,
    description TEXT NOT NULL,
    digest TEXT NOT NULL,
    definition BLOB NOT NULL,
    PRIMARY KEY (api_id, id)
);
CREATE INDEX IF NOT EXISTS deployments_by_number ON deployments (api_id, number, id);
CREATE TABLE IF NOT EXISTS deployment_seq (
    api_id TEXT PRIMARY KEY,
    last INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stages (
    api_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    canary_deployment_id TEXT,
    doc TEXT NOT NULL,
    PRIMARY KEY (api_id, stage)
) WITHOUT ROWID;
UPDATE meta SET schema = {SCHEMA_VERSION} WHERE id = 1 AND schema < {SCHEMA_VERSION};
"""

_key_encoder = msgspec.json.Encoder()
_key_decoder = msgspec.json.Decoder(ApiKey)
_plan_decoder = msgspec.json.Decoder(UsagePlan)
_pointer_decoder = msgspec.json.Decoder(StagePointer)

_DEPLOYMENT_COLUMNS = "api_id, id, number, created, description, digest, definition"
_DeploymentRow = tuple[str, str, int, float, str, str, bytes]


def _deployment(row: _DeploymentRow) -> Deployment:
    api_id, dep_id, number, created, description, digest, definition = row
    return Deployment(
        id=dep_id,
        apiId=api_id,
        number=int(number),
        createdDate=float(created),
        description=description,
        definition=bytes(definition),
        digest=digest,
    )


def _is_busy(ex: sqlite3.OperationalError) -> bool:
    text = str(ex).lower()
    return "locked" in text or "busy" in text


# Connections inherited through fork() are parked here and never closed nor used: closing one in
# the child could checkpoint or unlock on behalf of the parent (SQLite: "do not carry a connection
# across fork").
_FORK_LEFTOVERS: list[sqlite3.Connection] = []


class SqliteStore(Store):
    """``Store`` on a local SQLite file (the embedded backend)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        """The connection of this process (opened, and the schema created, on first use)."""
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            return conn
        if conn is not None:  # inherited through fork()
            _FORK_LEFTOVERS.append(conn)
            self._conn = None
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as ex:
            raise StoreError(f"cannot open state file {self.path}: {ex}") from ex
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        delay = 0.005
        while True:
            try:
                self._init(conn)
                break
            except sqlite3.OperationalError as ex:
                # Switching to WAL needs an exclusive lock, and SQLite answers "database is locked"
                # at once (no busy handler) while another process opens the same new file.
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                if not _is_busy(ex) or time.monotonic() > deadline:
                    conn.close()
                    raise StoreError(f"cannot initialise state file {self.path}: {ex}") from ex
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except sqlite3.Error as ex:
                conn.close()
                raise StoreError(f"cannot initialise state file {self.path}: {ex}") from ex
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _init(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network file system
            raise StoreError(f"state file {self.path}: cannot use WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as ex:
                raise StoreError(f"state file {self.path}: {ex}") from ex

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as ex:
                raise StoreError(f"state file {self.path}: {ex}") from ex
            try:
                result = fn(conn)
            except sqlite3.Error as ex:
                conn.execute("ROLLBACK")
                raise StoreError(f"state file {self.path}: {ex}") from ex
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as ex:
                conn.execute("ROLLBACK")
                raise StoreError(f"state file {self.path}: {ex}") from ex
            return result

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET version = version + 1 WHERE id = 1")

    # ------------------------------------------------------------------ lifecycle
    def open_sync(self) -> None:
        with self._lock:
            self._connect()

    def close_sync(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                if self._pid == os.getpid():
                    conn.close()
                else:
                    _FORK_LEFTOVERS.append(conn)

    async def open(self) -> None:
        self.open_sync()

    async def close(self) -> None:
        self.close_sync()

    # ------------------------------------------------------------------ snapshot
    def version_sync(self) -> int:
        return self._read(lambda c: int(c.execute("SELECT version FROM meta WHERE id = 1").fetchone()[0]))

    def load_sync(self) -> StateData:
        def read(c: sqlite3.Connection) -> StateData:
            version = int(c.execute("SELECT version FROM meta WHERE id = 1").fetchone()[0])
            keys = [_key_decoder.decode(doc) for (doc,) in c.execute("SELECT doc FROM keys ORDER BY id")]
            plans = [_plan_decoder.decode(doc) for (doc,) in c.execute("SELECT doc FROM plans ORDER BY id")]
            plan_keys: dict[str, list[str]] = {}
            for plan_id, key_id in c.execute(
                "SELECT plan_id, key_id FROM plan_keys ORDER BY plan_id, key_id"
            ):
                plan_keys.setdefault(plan_id, []).append(key_id)
            purges = [
                CachePurge(seq=seq, stage=stage, op=op, path=path, method=method, key=key, at=at)
                for seq, stage, op, path, method, key, at in c.execute(
                    "SELECT seq, stage, op, path, method, key, at FROM cache_purges ORDER BY seq"
                )
            ]
            stages = [
                _pointer_decoder.decode(doc)
                for (doc,) in c.execute("SELECT doc FROM stages ORDER BY api_id, stage")
            ]
            deployments = {
                f"{row[0]}/{row[1]}": _deployment(row)
                for row in c.execute(
                    f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE (api_id, id) IN ("
                    "SELECT api_id, deployment_id FROM stages UNION "
                    "SELECT api_id, canary_deployment_id FROM stages WHERE canary_deployment_id IS NOT NULL"
                    ") ORDER BY api_id, number"
                )
            }
            return StateData(
                version=version,
                keys=keys,
                plans=plans,
                plan_keys=plan_keys,
                cache_purges=purges,
                stages=stages,
                deployments=deployments,
            )

        return self._read(read)

    async def version(self) -> int:
        return self.version_sync()

    async def load(self) -> StateData:
        return self.load_sync()

    # ------------------------------------------------------------------ API keys
    def put_key_sync(self, key: ApiKey) -> None:
        if not key.valueHash:
            raise ValueError("ApiKey.valueHash is required")
        doc = _key_encoder.encode(key).decode()

        def write(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT id FROM keys WHERE hash = ?", (key.valueHash,)).fetchone()
            if row is not None and row[0] != key.id:
                raise DuplicateValueError(f"another API key ({row[0]}) has this value")
            c.execute(
                "INSERT INTO keys (id, hash, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, doc = excluded.doc",
                (key.id, key.valueHash, doc),
            )
            self._bump(c)

        self._write(write)

    async def put_key(self, key: ApiKey) -> None:
        self.put_key_sync(key)

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = self._read(lambda c: c.execute("SELECT doc FROM keys WHERE id = ?", (key_id,)).fetchone())
        return None if row is None else _key_decoder.decode(row[0])

    async def list_keys(self) -> list[ApiKey]:
        rows = self._read(lambda c: c.execute("SELECT doc FROM keys ORDER BY id").fetchall())
        return [_key_decoder.decode(doc) for (doc,) in rows]

    async def key_by_hash(self, value_hash: str) -> ApiKey | None:
        row = self._read(lambda c: c.execute("SELECT doc FROM keys WHERE hash = ?", (value_hash,)).fetchone())
        return None if row is None else _key_decoder.decode(row[0])

    async def delete_key(self, key_id: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            if c.execute("DELETE FROM keys WHERE id = ?", (key_id,)).rowcount == 0:
                return False
            c.execute("DELETE FROM plan_keys WHERE key_id = ?", (key_id,))
            c.execute("DELETE FROM usage WHERE key_id = ?", (key_id,))
            self._bump(c)
            return True

        return self._write(write)

    # ------------------------------------------------------------------ usage plans
    async def put_plan(self, plan: UsagePlan) -> None:
        doc = _key_encoder.encode(plan).decode()

        def write(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO plans (id, doc) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                (plan.id, doc),
            )
            self._bump(c)

        self._write(write)

    async def get_plan(self, plan_id: str) -> UsagePlan | None:
        row = self._read(lambda c: c.execute("SELECT doc FROM plans WHERE id = ?", (plan_id,)).fetchone())
        return None if row is None else _plan_decoder.decode(row[0])

    async def list_plans(self) -> list[UsagePlan]:
        rows = self._read(lambda c: c.execute("SELECT doc FROM plans ORDER BY id").fetchall())
        return [_plan_decoder.decode(doc) for (doc,) in rows]

    async def delete_plan(self, plan_id: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            if c.execute("DELETE FROM plans WHERE id = ?", (plan_id,)).rowcount == 0:
                return False
            c.execute("DELETE FROM plan_keys WHERE plan_id = ?", (plan_id,))
            c.execute("DELETE FROM usage WHERE plan_id = ?", (plan_id,))
            self._bump(c)
            return True

        return self._write(write)

    async def add_plan_key(self, plan_id: str, key_id: str) -> None:
        def write(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "INSERT OR IGNORE INTO plan_keys (plan_id, key_id) VALUES (?, ?)", (plan_id, key_id)
            )
            if cur.rowcount:
                self._bump(c)

        self._write(write)

    async def remove_plan_key(self, plan_id: str, key_id: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            cur = c.execute("DELETE FROM plan_keys WHERE plan_id = ? AND key_id = ?", (plan_id, key_id))
            if cur.rowcount == 0:
                return False
            self._bump(c)
            return True

        return self._write(write)

    async def plan_key_ids(self, plan_id: str) -> list[str]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT key_id FROM plan_keys WHERE plan_id = ? ORDER BY key_id", (plan_id,)
            ).fetchall()
        )
        return [key_id for (key_id,) in rows]

    # ------------------------------------------------------------------ usage
    async def usage(
        self, plan_id: str, key_ids: list[str] | None, start_day: int, end_day: int
    ) -> dict[str, dict[int, int]]:
        def read(c: sqlite3.Connection) -> list[tuple[str, int, int]]:
            sql = "SELECT key_id, day, used FROM usage WHERE plan_id = ? AND day >= ? AND day <= ?"
            params: list[object] = [plan_id, start_day, end_day]
            if key_ids is not None:
                if not key_ids:
                    return []
                sql += f" AND key_id IN ({','.join('?' * len(key_ids))})"
                params.extend(key_ids)
            return c.execute(sql + " ORDER BY key_id, day", params).fetchall()

        out: dict[str, dict[int, int]] = {}
        for key_id, day, used in self._read(read):
            out.setdefault(key_id, {})[int(day)] = int(used)
        return out

    def set_usage_many_sync(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """Write several ``(plan_id, key_id, day, used)`` counts in one transaction (the flusher)."""
        batch = list(rows)
        if not batch:
            return

        def write(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO usage (plan_id, key_id, day, used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (plan_id, key_id, day) DO UPDATE SET used = excluded.used",
                batch,
            )

        self._write(write)

    async def set_usage(self, plan_id: str, key_id: str, day: int, used: int) -> None:
        self.set_usage_many_sync([(plan_id, key_id, day, used)])

    # ------------------------------------------------------------------ cache purges
    def add_cache_purge_sync(
        self,
        stage: str,
        op: CachePurgeOp,
        *,
        path: str = "",
        method: str = "*",
        key: str = "",
        at: float | None = None,
    ) -> int:
        if op not in CACHE_PURGE_OPS:
            raise ValueError(f"unknown cache purge op {op!r}")
        when = now_ts() if at is None else float(at)

        def write(c: sqlite3.Connection) -> int:
            # AUTOINCREMENT: a seq is never reused, even once its row is trimmed away, and a
            # rolled-back insert gives its number back (no gaps).
            cur = c.execute(
                "INSERT INTO cache_purges (stage, op, path, method, key, at) VALUES (?, ?, ?, ?, ?, ?)",
                (stage, op, path, method, key, when),
            )
            seq = int(cur.lastrowid or 0)
            c.execute("DELETE FROM cache_purges WHERE seq <= ?", (seq - MAX_CACHE_PURGES,))
            self._bump(c)
            return seq

        return self._write(write)

    async def add_cache_purge(
        self,
        stage: str,
        op: CachePurgeOp,
        *,
        path: str = "",
        method: str = "*",
        key: str = "",
        at: float | None = None,
    ) -> int:
        return self.add_cache_purge_sync(stage, op, path=path, method=method, key=key, at=at)

    # ------------------------------------------------------------------ deployments
    @staticmethod
    def _in_use_by(c: sqlite3.Connection, api_id: str, deployment_id: str) -> list[str]:
        """The stages of ``api_id`` whose pointer or canary points at the deployment."""
        rows = c.execute(
            "SELECT stage FROM stages WHERE api_id = ? AND (deployment_id = ? OR canary_deployment_id = ?) "
            "ORDER BY stage",
            (api_id, deployment_id, deployment_id),
        )
        return [stage for (stage,) in rows]

    def add_deployment_sync(
        self, api_id: str, definition: bytes, description: str = "", *, at: float | None = None
    ) -> Deployment:
        check_api_id(api_id)
        data = check_definition(definition)
        digest = deployment_digest(data)
        created = now_ts() if at is None else float(at)
        cap = max(1, int(self.max_deployments))

        def write(c: sqlite3.Connection) -> Deployment:
            count = int(
                c.execute("SELECT count(*) FROM deployments WHERE api_id = ?", (api_id,)).fetchone()[0]
            )
            if count >= cap:
                excess = count - cap + 1
                victims = c.execute(
                    "SELECT id FROM deployments WHERE api_id = :api AND id NOT IN ("
                    "SELECT deployment_id FROM stages WHERE api_id = :api UNION "
                    "SELECT canary_deployment_id FROM stages "
                    "WHERE api_id = :api AND canary_deployment_id IS NOT NULL"
                    ") ORDER BY number LIMIT :n",
                    {"api": api_id, "n": excess},
                ).fetchall()
                if len(victims) < excess:
                    raise StoreError(
                        f"API {api_id} has {count} deployments (the limit is {cap}) and stages use them all"
                    )
                c.executemany(
                    "DELETE FROM deployments WHERE api_id = ? AND id = ?", [(api_id, v) for (v,) in victims]
                )
            # A rolled-back transaction gives its number back: numbers have no gaps.
            [(number,)] = c.execute(
                "INSERT INTO deployment_seq (api_id, last) VALUES (?, 1) "
                "ON CONFLICT (api_id) DO UPDATE SET last = last + 1 RETURNING last",
                (api_id,),
            ).fetchall()
            for _ in range(ID_ATTEMPTS):
                dep_id = new_id(6)
                cur = c.execute(
                    f"INSERT OR IGNORE INTO deployments ({_DEPLOYMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (api_id, dep_id, number, created, description, digest, data),
                )
                if cur.rowcount:
                    return Deployment(
                        id=dep_id,
                        apiId=api_id,
                        number=int(number),
                        createdDate=created,
                        description=description,
                        definition=data,
                        digest=digest,
                    )
            raise StoreError(f"no free deployment id for API {api_id}")  # pragma: no cover - 36**6 ids

        return self._write(write)

    async def add_deployment(
        self, api_id: str, definition: bytes, description: str = "", *, at: float | None = None
    ) -> Deployment:
        return self.add_deployment_sync(api_id, definition, description, at=at)

    async def list_deployments(self, api_id: str) -> list[Deployment]:
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE api_id = ? ORDER BY number", (api_id,)
            ).fetchall()
        )
        return [_deployment(row) for row in rows]

    async def get_deployment(self, api_id: str, deployment_id: str) -> Deployment | None:
        row = self._read(
            lambda c: c.execute(
                f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE api_id = ? AND id = ?",
                (api_id, deployment_id),
            ).fetchone()
        )
        return None if row is None else _deployment(row)

    async def delete_deployment(self, api_id: str, deployment_id: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            if (
                c.execute(
                    "SELECT 1 FROM deployments WHERE api_id = ? AND id = ?", (api_id, deployment_id)
                ).fetchone()
                is None
            ):
                return False
            stages = self._in_use_by(c, api_id, deployment_id)
            if stages:
                raise DeploymentInUseError(
                    f"deployment {deployment_id} of API {api_id} is in use by stage(s) {', '.join(stages)}"
                )
            c.execute("DELETE FROM deployments WHERE api_id = ? AND id = ?", (api_id, deployment_id))
            return True

        return self._write(write)

    # ------------------------------------------------------------------ stage pointers
    def put_stage_pointer_sync(self, pointer: StagePointer) -> None:
        doc = _key_encoder.encode(pointer).decode()
        canary_id = pointer.canary.deploymentId if pointer.canary is not None else None

        def write(c: sqlite3.Connection) -> None:
            for dep_id in pointer.deployment_ids():
                if (
                    c.execute(
                        "SELECT 1 FROM deployments WHERE api_id = ? AND id = ?", (pointer.apiId, dep_id)
                    ).fetchone()
                    is None
                ):
                    raise KeyError(f"API {pointer.apiId} has no deployment {dep_id}")
            c.execute(
                "INSERT INTO stages (api_id, stage, deployment_id, canary_deployment_id, doc) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (api_id, stage) DO UPDATE SET "
                "deployment_id = excluded.deployment_id, "
                "canary_deployment_id = excluded.canary_deployment_id, doc = excluded.doc",
                (pointer.apiId, pointer.stage, pointer.deploymentId, canary_id, doc),
            )
            self._bump(c)

        self._write(write)

    async def put_stage_pointer(self, pointer: StagePointer) -> None:
        self.put_stage_pointer_sync(pointer)

    async def get_stage_pointer(self, api_id: str, stage: str) -> StagePointer | None:
        row = self._read(
            lambda c: c.execute(
                "SELECT doc FROM stages WHERE api_id = ? AND stage = ?", (api_id, stage)
            ).fetchone()
        )
        return None if row is None else _pointer_decoder.decode(row[0])

    async def delete_stage_pointer(self, api_id: str, stage: str) -> bool:
        def write(c: sqlite3.Connection) -> bool:
            if c.execute("DELETE FROM stages WHERE api_id = ? AND stage = ?", (api_id, stage)).rowcount == 0:
                return False
            self._bump(c)
            return True

        return self._write(write)

    async def list_stage_pointers(self, api_id: str | None = None) -> list[StagePointer]:
        def read(c: sqlite3.Connection) -> list[tuple[str]]:
            if api_id is None:
                return c.execute("SELECT doc FROM stages ORDER BY api_id, stage").fetchall()
            return c.execute("SELECT doc FROM stages WHERE api_id = ? ORDER BY stage", (api_id,)).fetchall()

        return [_pointer_decoder.decode(doc) for (doc,) in self._read(read)]
