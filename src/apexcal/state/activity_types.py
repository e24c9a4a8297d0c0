"""The mirror's activity types: the organization's complete listing, kept with the types that vanished from it."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update

from apexcal.apex.models import ActivityType
from apexcal.state._sql import chunks
from apexcal.state.part import StorePart
from apexcal.state.tables import ActivityTypeRow, table_of

_T = table_of(ActivityTypeRow)


class ActivityTypesPart(StorePart):
    """Activity types of each organization, keyed by the API's ``organization_id``."""

    def upsert_types(self, org_id: int, types: Iterable[ActivityType]) -> bool:
        """Store the organization's complete type listing; return whether anything changed.

        Types missing from the listing are kept, flagged deleted (with the time
        they vanished), so that activities still naming them resolve.
        """
        now = self._clock()
        listing = {t.id: t for t in types}
        changed = False
        with self._db.write("upsert activity types") as conn:
            stored = {
                r.id: (r.content_hash, r.deleted)
                for r in conn.execute(
                    select(_T.c.id, _T.c.content_hash, _T.c.deleted).where(
                        _T.c.organization_id == org_id
                    )
                )
            }
            for type_id, item in listing.items():
                values = {
                    "key": item.key,
                    "content_hash": item.content_hash(),
                    "data": item.model_dump(mode="json"),
                    "deleted": item.deleted_at is not None,
                    "vanished_at": None,
                }
                old = stored.get(type_id)
                if old == (values["content_hash"], values["deleted"]):
                    continue
                changed = True
                if old is None:
                    conn.execute(_T.insert().values(organization_id=org_id, id=type_id, **values))
                else:
                    conn.execute(
                        update(_T)
                        .where(_T.c.organization_id == org_id, _T.c.id == type_id)
                        .values(**values)
                    )
            gone = [i for i, (_, deleted) in stored.items() if i not in listing and not deleted]
            for chunk in chunks(gone):
                changed = True
                conn.execute(
                    update(_T)
                    .where(_T.c.organization_id == org_id, _T.c.id.in_(chunk))
                    .values(deleted=True, vanished_at=now)
                )
        return changed

    def types(self, org_id: int, *, include_deleted: bool = True) -> dict[str, ActivityType]:
        """Types keyed by ``type_key(name)``; a live type wins over a deleted one of the same key.

        Deleted types are included by default so that old activities still
        resolve their type's name and colour; a type that vanished from the
        listing comes back with ``deleted_at`` set to when it vanished.
        """
        query = select(_T.c.data, _T.c.key, _T.c.deleted, _T.c.vanished_at).where(
            _T.c.organization_id == org_id
        )
        if not include_deleted:
            query = query.where(_T.c.deleted.is_(False))
        with self._db.read("read activity types") as conn:
            rows = conn.execute(query.order_by(_T.c.deleted.desc(), _T.c.id)).all()
        result: dict[str, ActivityType] = {}
        for r in rows:
            item = ActivityType.model_validate(r.data)
            if r.deleted and item.deleted_at is None and r.vanished_at is not None:
                item = item.model_copy(update={"deleted_at": r.vanished_at})
            result[r.key] = item  # live rows come last and win
        return result
