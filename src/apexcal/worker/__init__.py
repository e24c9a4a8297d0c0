"""``apexcal worker``: many processes sharing the sync work through procrastinate on PostgreSQL.

* :mod:`~apexcal.worker.schedule` — pure: when a target or feed is due
  (interval, a per-item phase that spreads them, backoff after failures);
* :mod:`~apexcal.worker.tasks` — the tasks: ``tick`` (periodic) defers one
  ``pull`` per organization with due work; ``pull`` runs the organization's
  pull (and reconcile sweep) once, then defers ``sync_target`` and
  ``build_feed`` per due item under a lock and a queueing lock per item; the
  ``reaper`` finishes jobs of dead workers and jobs past their maximum
  duration as failed, and the next tick runs them again;
* :mod:`~apexcal.worker.runner` — the process: event loop, thread pool,
  connection pools, signals.

Job arguments carry keys (organization, target, feed), never secrets: each
worker reads the config directory, with its secrets, itself.
"""
