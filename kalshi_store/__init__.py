"""PostgreSQL storage for recorded Kalshi data.

Public API (import from the modules; this package imports nothing itself so ``kalshi_ws`` users do not pay for
a database driver):

* :func:`kalshi_store.migrations.migrate` — apply ``sql/NNN_*.sql`` in order, once each, under an advisory lock.
* :func:`kalshi_store.embedded.ensure_database` — ``DATABASE_URL`` or an embedded server's ``kalshi`` database;
  :class:`kalshi_store.embedded.EmbeddedPostgres` — start/stop/freeze a server in a data folder.
* :class:`kalshi_store.recorder.Recorder` — the client's MessageSink: batching, COPY writes, spill, gap ledger,
  dead letters, session manifest. Its parts: :mod:`kalshi_store.ledger` (events -> gap-ledger operations),
  :mod:`kalshi_store.health` (a session's counters, open incidents and verdict), :mod:`kalshi_store.dblink` (the
  supervised database connection), :mod:`kalshi_store.outbox` (batches until durable; the one replay loop).
* :func:`kalshi_store.spill.replay_spill` — write spilled batches left by a dead process (``kalshi-ingest db replay``).
* :func:`kalshi_store.retention.apply_retention` — drop day partitions older than N days
  (``kalshi-ingest db retention --keep-days N``).
* :class:`kalshi_store.writer.CopyWriter` — one batch, one transaction: COPY into staging, INSERT ... ON CONFLICT.
* :class:`kalshi_store.depth.DepthStore` — what a depth summary replays (a session's stored books, gaps, windows)
  and ``kalshi.depth_summaries``.
* :class:`kalshi_store.alerts_store.AlertStore` — what the alert rules read, and the alert episodes.
* :func:`kalshi_store.session_digest.latest_session_digest` — what the latest session of a market set stored.

Schema: see ``sql/001``-``005`` (tables in schema ``kalshi``, comments on every column).
"""
