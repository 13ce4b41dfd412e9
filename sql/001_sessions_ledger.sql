-- 001: the kalshi schema, the session manifest, the gap ledger and the dead-letter table.
--
-- Conventions for every table in schema kalshi:
--   * prices and counts are `numeric` without a declared scale, so the exact wire text is kept
--     ('0.0050' stays 0.0050, '75.25' stays 75.25); never float.
--   * column names are the wire names with the `_dollars` / `_fp` suffix dropped
--     (yes_price_dollars -> yes_price, count_fp -> count); `*_ts_ms` become `*_ts` (timestamptz).
--   * `exchange_ts` is the exchange's time of the event, `received_at` the time our client received the frame.
--   * `session_id`, `generation`, `sid`, `seq` say which recording session, which connection of it (1, 2, ...),
--     which subscription and which position in that subscription's sequence a row came from.

create schema if not exists kalshi;
comment on schema kalshi is 'Kalshi market data recorded from the WebSocket API (and REST backfill), one row per exchange event.';

create table kalshi.sessions (
    session_id          uuid primary key,
    market_set          text not null,
    environment         text not null,
    markets             text[] not null default '{}',
    channels            text[] not null default '{}',
    use_yes_price       boolean not null default false,
    planned_start       timestamptz,
    planned_end         timestamptz,
    started_at          timestamptz not null,
    ended_at            timestamptz,
    status              text not null default 'running'
        check (status in ('running', 'completed', 'cancelled', 'failed', 'degraded')),
    status_message      text,
    received            jsonb not null default '{}',
    written             jsonb not null default '{}',
    duplicates          jsonb not null default '{}',
    rows_spilled        bigint not null default 0,
    reconnects          integer not null default 0,
    gaps                integer not null default 0,
    max_message_age_ms  bigint,
    paused_count        integer not null default 0,
    paused_seconds      double precision not null default 0,
    flow_run_id         text,
    host                text,
    updated_at          timestamptz not null default now()
);
comment on table kalshi.sessions is
    'Session manifest: one row per time-boxed recording session (planned vs actual window, market set, '
    'per-table counts received and written, outage and gap counters, final status).';
comment on column kalshi.sessions.session_id is 'Session id; every recorded row carries it.';
comment on column kalshi.sessions.market_set is 'Name of the configured market set that was recorded.';
comment on column kalshi.sessions.environment is 'Kalshi environment (production, demo, or an explicit URL such as the simulator).';
comment on column kalshi.sessions.markets is 'Market tickers subscribed at session start.';
comment on column kalshi.sessions.channels is 'WebSocket channels subscribed.';
comment on column kalshi.sessions.use_yes_price is
    'Whether the order book subscription pinned use_yes_price: when true, NO-side book prices are YES prices; '
    'when false they are no-leg prices (a NO bid at q is a YES ask at 1 - q).';
comment on column kalshi.sessions.planned_start is 'When the session was scheduled to start.';
comment on column kalshi.sessions.planned_end is 'When the session was scheduled to stop reading (its deadline).';
comment on column kalshi.sessions.started_at is 'When recording actually started.';
comment on column kalshi.sessions.ended_at is 'When recording actually ended (null while running or if the process died).';
comment on column kalshi.sessions.status is
    'running; completed (ran to its end); cancelled; failed (ended by an error); degraded (completed, but data '
    'was damaged: unrecovered gaps, rows that could not be stored, or reading paused by backpressure).';
comment on column kalshi.sessions.status_message is 'Human-readable reason for the final status.';
comment on column kalshi.sessions.received is
    'Rows received from the exchange per target table, as {"table": count} (dead_letter counts frames that could not be stored normally).';
comment on column kalshi.sessions.written is
    'Rows newly inserted per target table, as {"table": count}. received = written + duplicates when nothing is pending.';
comment on column kalshi.sessions.duplicates is
    'Rows per table that were already stored (redelivery, replayed batches, overlapping sessions) and were skipped.';
comment on column kalshi.sessions.rows_spilled is 'Rows written to the local spill files while the database was unavailable (replayed later).';
comment on column kalshi.sessions.reconnects is 'WebSocket reconnects during the session.';
comment on column kalshi.sessions.gaps is 'Sequence gaps detected during the session (see gap_ledger).';
comment on column kalshi.sessions.max_message_age_ms is 'Largest observed receive time minus exchange time, in milliseconds.';
comment on column kalshi.sessions.paused_count is 'Times the recorder stopped reading the socket because memory and spill were full.';
comment on column kalshi.sessions.paused_seconds is 'Total seconds the recorder stopped reading the socket (backpressure).';
comment on column kalshi.sessions.flow_run_id is 'Prefect flow run id, when the session ran inside a flow.';
comment on column kalshi.sessions.host is 'Host name of the machine that recorded the session.';
comment on column kalshi.sessions.updated_at is 'Last time this row was updated by the recorder.';

create table kalshi.gap_ledger (
    event_id        uuid primary key,
    session_id      uuid not null,
    generation      integer,
    incident_id     bigint,
    kind            text not null check (kind in (
        'gap', 'disconnect', 'connect_failed', 'recovery', 'resubscribe', 'subscription_error', 'stale',
        'auth_rejected', 'book_inconsistency', 'backpressure')),
    sid             integer,
    channel         text,
    markets         text[] not null default '{}',
    expected_seq    bigint,
    received_seq    bigint,
    started_at      timestamptz not null,
    ended_at        timestamptz,
    outcome         text,
    detail          jsonb not null default '{}'
);
create index gap_ledger_session_incident on kalshi.gap_ledger (session_id, incident_id);
create index gap_ledger_started_at on kalshi.gap_ledger (started_at);
comment on table kalshi.gap_ledger is
    'One row per detected gap, disconnect, reconnect failure, recovery step, resubscription, subscription error, '
    'stale stream, rejected handshake, book inconsistency or backpressure pause. Rows of an incident that '
    'damaged the record (gap, disconnect, backpressure) stay open (ended_at null) until it is closed; a window '
    'between started_at and ended_at (or the session end when still open) is not trustworthy for the markets listed '
    '(all markets of the session when markets is empty).';
comment on column kalshi.gap_ledger.event_id is 'Unique id of the row (assigned by the recorder, so replays never duplicate it).';
comment on column kalshi.gap_ledger.session_id is 'Session the event belongs to (kalshi.sessions).';
comment on column kalshi.gap_ledger.generation is 'Connection number within the session (1 = first connection).';
comment on column kalshi.gap_ledger.incident_id is 'Incident id shared by the rows of one incident (a gap and its recovery, a disconnect and its reconnect); unique within a session.';
comment on column kalshi.gap_ledger.kind is
    'gap (sequence numbers skipped), disconnect, connect_failed, recovery (snapshot requested or an incident closed), '
    'resubscribe, subscription_error (server error reply), stale (stream went silent), auth_rejected, '
    'book_inconsistency (crossed/negative/out-of-range book), backpressure (recorder stopped reading the socket).';
comment on column kalshi.gap_ledger.sid is 'Subscription id affected (null when the whole connection was affected).';
comment on column kalshi.gap_ledger.channel is 'Channel affected, when known.';
comment on column kalshi.gap_ledger.markets is 'Market tickers affected; empty means every market of the session or connection.';
comment on column kalshi.gap_ledger.expected_seq is 'For gaps: the seq that should have arrived next.';
comment on column kalshi.gap_ledger.received_seq is 'For gaps: the seq that arrived instead.';
comment on column kalshi.gap_ledger.started_at is 'When the incident started (detected).';
comment on column kalshi.gap_ledger.ended_at is 'When the incident was closed (books trusted again); null while open or never closed.';
comment on column kalshi.gap_ledger.outcome is
    'How the incident ended: snapshot, resubscribed, reconnected, abandoned (never recovered), resumed (backpressure ended); null while open.';
comment on column kalshi.gap_ledger.detail is 'Event-specific details (reason, error code and message, attempt number, silent seconds ...).';

create table kalshi.dead_letter (
    id              uuid primary key,
    session_id      uuid,
    generation      integer,
    received_at     timestamptz not null,
    reason          text not null check (reason in ('malformed', 'legacy', 'unknown', 'missing_seq', 'unstorable')),
    type            text,
    sid             integer,
    seq             bigint,
    error           text,
    raw             bytea
);
create index dead_letter_session on kalshi.dead_letter (session_id, received_at);
comment on table kalshi.dead_letter is
    'Frames that were received but could not be stored as typed rows: undecodable frames, messages in a removed '
    'legacy shape, unknown message types, sequenced messages without seq, and rows the database rejected. '
    'Nothing is dropped silently; the raw frame is kept for replay.';
comment on column kalshi.dead_letter.id is 'Unique id (assigned by the recorder, so replays never duplicate it).';
comment on column kalshi.dead_letter.session_id is 'Session that received the frame.';
comment on column kalshi.dead_letter.generation is 'Connection number within the session.';
comment on column kalshi.dead_letter.received_at is 'When the frame was received.';
comment on column kalshi.dead_letter.reason is
    'malformed (not decodable), legacy (removed 2026 shape), unknown (unknown type), missing_seq (sequenced type '
    'without seq), unstorable (rejected by the database).';
comment on column kalshi.dead_letter.type is 'Message type, when it could be read.';
comment on column kalshi.dead_letter.sid is 'Subscription id, when it could be read.';
comment on column kalshi.dead_letter.seq is 'Sequence number, when it could be read.';
comment on column kalshi.dead_letter.error is 'Why the frame could not be stored.';
comment on column kalshi.dead_letter.raw is 'The frame as received (JSON bytes), or re-encoded from the decoded message.';
