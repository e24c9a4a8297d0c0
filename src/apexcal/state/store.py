"""The state store: one object over the database, with methods grouped by concept.

``Store.open(url)`` connects, applies pending migrations and returns a store
that is safe to share between threads (feed server, scheduler jobs): each
method runs its own short transaction on a pooled connection.  The parts it
is made of live in their own modules: :mod:`~apexcal.state.mirror`,
:mod:`~apexcal.state.activity_types`,
:mod:`~apexcal.state.targets`, :mod:`~apexcal.state.journal`, :mod:`~apexcal.state.fieldjournal`,
:mod:`~apexcal.state.geocache`, :mod:`~apexcal.state.feeds`,
:mod:`~apexcal.state.hooks`.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from types import TracebackType

import structlog
from sqlalchemy.engine import make_url

from apexcal.clock import Clock, utcnow
from apexcal.state import migrate
from apexcal.state.activity_types import ActivityTypesPart
from apexcal.state.database import Database, make_engine, sqlite_path
from apexcal.state.feeds import FeedsPart
from apexcal.state.fieldjournal import FieldJournalPart
from apexcal.state.geocache import GeocachePart
from apexcal.state.hooks import HooksPart
from apexcal.state.journal import JournalPart
from apexcal.state.mirror import MirrorPart
from apexcal.state.queue import current_queue_schema
from apexcal.state.targets import TargetsPart

log = structlog.get_logger(__name__)


class Store(MirrorPart, ActivityTypesPart, TargetsPart, JournalPart, FieldJournalPart, GeocachePart, FeedsPart, HooksPart):
    """The state store (see the module docstring); use :meth:`open`, close when done."""

    def __init__(
        self, db: Database, *, clock: Clock = utcnow, lock_dir: Path | None = None
    ) -> None:
        super().__init__(db, clock)
        self._lock_dir = lock_dir
        self._local_locks = {}
        self._local_locks_guard = threading.Lock()
        self._owner = True

    def for_organization(self, key: str) -> Store:
        """This store seen by organization ``key``: its targets, records, journal and feeds.

        The view shares this store's connections (closing it closes nothing);
        the mirror stays keyed by the API's organization id.  ``''`` is the
        organization of a single config file, and the default.
        """
        view = copy.copy(self)
        view._org = key
        view._owner = False
        return view

    @property
    def organization(self) -> str:
        """The organization key this store reads and writes (``''``: a single config file)."""
        return self._org

    @classmethod
    def open(
        cls,
        url: str,
        *,
        migrate_schema: bool = True,
        clock: Clock = utcnow,
        pool_size: int = 5,
        max_overflow: int = 10,
    ) -> Store:
        """Connect to ``url`` (SQLite or PostgreSQL) and bring its schema to the newest version.

        Raises :class:`~apexcal.state.database.StoreUnavailable` (an operator
        error) when the database cannot be reached, created or migrated.
        ``pool_size`` and ``max_overflow`` bound its PostgreSQL connections.
        """
        db = Database(make_engine(url, pool_size=pool_size, max_overflow=max_overflow))
        try:
            if migrate_schema:
                before, after = migrate.upgrade(db)
                if before != after:
                    log.info("state.migrated", url=db.url, before=before, after=after)
        except BaseException:
            db.dispose()
            raise
        path = sqlite_path(make_url(url)) if db.dialect == "sqlite" else None
        lock_dir = path.with_name(path.name + "-locks") if path is not None else None
        return cls(db, clock=clock, lock_dir=lock_dir)

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return self._db.url

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    def queue_schema(self) -> str:
        """The PostgreSQL schema of the workers' job queue (see :mod:`apexcal.state.queue`)."""
        with self._db.read("find the job queue schema") as conn:
            return current_queue_schema(conn)

    def schema_revision(self) -> str | None:
        """The migration revision the database is at."""
        return migrate.current_revision(self._db)

    def close(self) -> None:
        """Release every database connection (a view from :meth:`for_organization`: nothing)."""
        if self._owner:
            self._db.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
