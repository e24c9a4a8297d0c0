"""A faithful, in-memory AchieveApex API server (Starlette) for tests, the demo and benchmarks.

It implements the Activities and Activity Types documents: find/get/create/patch/
delete, the bulk ``PATCH /activities``, Feathers query semantics (``$limit`` capped
at ``paginate_max``, ``$skip``, multi-key ``$sort`` with a final ``id`` tie-break,
``$select``, ``$gt $gte $lt $lte $ne $in $nin $or``), the URL query parsed like
Node's ``qs`` (see :mod:`.qs`) or a ``{"query": {...}}`` JSON body on GET, bearer
tokens per user, Feathers error JSON, soft delete and ``updated_at`` stamps.

Behaviour worth knowing:

- a bulk patch naming a live activity of an organization the caller is not a
  member of is refused as a whole with 403 Forbidden (nothing changes); unknown
  and deleted ids are skipped silently and left out of ``ids`` in the answer
  (``updated`` counts only what was changed; deleted records are invisible, so
  they cannot be told from unknown ones); all changed rows share one
  ``updated_at``;
- POST/PATCH ignore server-written fields (``id``, timestamps, ``created_by_user_id``,
  joined objects), refuse unknown fields, wrong types, an ``activity_type`` that is
  not a live type key of the organization, and an end before the start (400);
- creating returns 201; get joins the full related objects, find joins the lighter
  ones only with ``fastJoinForActivityList=true``.

Admin endpoint (answers only clients on a loopback address; never counted or faulted):

- ``POST /__admin/faults`` ``{"kind", "count"?, "status"?, "retry_after"?, "seconds"?,
  "size"?, "method"?, "path"?}`` queues a fault (kinds in :mod:`.faults`);
  ``GET`` lists pending faults, ``DELETE`` clears them;
- ``GET /__admin/requests`` → ``{"total", "by_route", "recent": [{"method", "path",
  "query", "line"}]}``; ``DELETE`` zeroes them;
- ``POST /__admin/seed`` ``{"organization_id", "count", "seed"?, "anchor"?}``;
- ``POST /__admin/reset`` back to the demo users and no activities;
- ``GET|PUT /__admin/users`` read or replace organizations and users (users-file format).

Tests change data directly through :class:`EmulatorState` (``insert_activity``,
``put_raw`` without an ``updated_at`` bump, ``seed``, ``get``, ``activities``).
"""

from __future__ import annotations

from apexcal.emulator.app import create_app
from apexcal.emulator.qs import parse_query
from apexcal.emulator.server import serve_in_thread
from apexcal.emulator.state import DEMO_ORG_ID, EmulatorState

__all__ = ["DEMO_ORG_ID", "EmulatorState", "create_app", "parse_query", "serve_in_thread"]
