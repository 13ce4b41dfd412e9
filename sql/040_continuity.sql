-- 040: a continuous record. Sessions own their schedule slot and hand over to the next one; a coverage record says
-- from when to when a connection was recording each market; every uncovered second counts as untrusted.
--
--   kalshi.sessions (new columns)   slot_start/slot_end, heartbeat_at, superseded_by/superseded_at (handover)
--   kalshi.coverage                 one row per (session, market, stretch of recording)
--   kalshi.coverage_windows         coverage with the end of stretches still open (or of a session that died)
--   kalshi.uncovered_windows        per market set and market: time nobody was recording it (between sessions,
--                                   after a session died, before a market that opened was subscribed)
--   kalshi.untrusted_windows        now includes the uncovered windows (kind = 'uncovered')
--   kalshi.session_health, kalshi.data_completeness_daily: coverage-aware (no figure says 100 % across a hole)

alter table kalshi.sessions
    add column slot_start timestamptz,
    add column slot_end timestamptz,
    add column heartbeat_at timestamptz,
    add column superseded_by uuid,
    add column superseded_at timestamptz;
comment on column kalshi.sessions.slot_start is
    'Scheduled sessions: the start of the schedule slot the session owns (its flow run''s scheduled start). Null for ad-hoc runs.';
comment on column kalshi.sessions.slot_end is
    'The end of the time the session owns: for a scheduled session the next scheduled start (or slot_start + '
    'session_seconds), for an ad-hoc one its planned end. A scheduled session records past it until the next session '
    'has taken over (handover), at most until its planned_end.';
comment on column kalshi.sessions.heartbeat_at is
    'Last time the recording process said it was alive (every second or so). A running session whose heartbeat is '
    'more than a minute old was killed: the next session of its market set closes it as failed.';
comment on column kalshi.sessions.superseded_by is
    'The session of the same market set that took over from this one (handover), once its books were stored.';
comment on column kalshi.sessions.superseded_at is
    'When the next session took over: this session''s data is authoritative until then, the next session''s after.';
create index sessions_market_set_running on kalshi.sessions (market_set) where status = 'running';

create table kalshi.coverage (
    session_id      uuid not null,
    market_set      text not null,
    market_ticker   text not null,
    recording_from  timestamptz not null,
    recording_to    timestamptz,
    opened_at       timestamptz,
    end_reason      text check (end_reason in ('session_end', 'handover', 'removed', 'inactive', 'failed')),
    primary key (session_id, market_ticker, recording_from)
);
create index coverage_market on kalshi.coverage (market_set, market_ticker, recording_from);
comment on table kalshi.coverage is
    'When a connection was recording each market: one row per session, market and stretch of recording (a market '
    'removed and added again has two). A session writes its rows as it goes (with its heartbeat); a stretch still '
    'open (recording_to null) ends at the session''s end, or at its last heartbeat if its process died.';
comment on column kalshi.coverage.session_id is 'Recording session (kalshi.sessions).';
comment on column kalshi.coverage.market_set is 'Market set of the session.';
comment on column kalshi.coverage.market_ticker is 'Market recorded.';
comment on column kalshi.coverage.recording_from is
    'From when the market was recorded: its order book snapshot was received (or, without an order book channel, '
    'its subscription was made).';
comment on column kalshi.coverage.recording_to is 'Until when (null while recording or when the process died).';
comment on column kalshi.coverage.opened_at is
    'For a market that opened during the session: when it opened (its lifecycle message); the time from then to '
    'recording_from was not recorded.';
comment on column kalshi.coverage.end_reason is
    'session_end (the session ended), handover (the next session took over), removed (the market left the set), '
    'inactive (the market was deactivated, determined or settled), failed (the session failed).';

create or replace view kalshi.coverage_windows as
with explicit as (
    select c.session_id, c.market_set, c.market_ticker, c.recording_from,
           greatest(c.recording_from,
                    coalesce(c.recording_to, s.ended_at, greatest(s.heartbeat_at, s.updated_at))) as recording_to,
           c.opened_at, c.end_reason
    from kalshi.coverage c
    join kalshi.sessions s using (session_id)
),
-- Sessions without coverage rows (recorded before this migration, or whose coverage never reached the database):
-- every market of the session, from its start to its end.
implicit as (
    select s.session_id, s.market_set, m.market_ticker, s.started_at as recording_from,
           greatest(s.started_at, coalesce(s.ended_at, greatest(s.heartbeat_at, s.updated_at))) as recording_to,
           null::timestamptz as opened_at, null::text as end_reason
    from kalshi.sessions s
    cross join lateral unnest(s.markets) as m(market_ticker)
    where not exists (select from kalshi.coverage c where c.session_id = s.session_id)
)
select w.*, tstzrange(w.recording_from, w.recording_to, '[)') as time_range
from (select * from explicit union all select * from implicit) w;
comment on view kalshi.coverage_windows is
    'When each market of each market set was being recorded, per session (kalshi.coverage, with open stretches ended '
    'at the session''s end or last heartbeat; sessions without coverage rows count from their start to their end).';

comment on column kalshi.coverage_windows.session_id is 'Recording session.';
comment on column kalshi.coverage_windows.market_set is 'Market set of the session.';
comment on column kalshi.coverage_windows.market_ticker is 'Market recorded.';
comment on column kalshi.coverage_windows.recording_from is 'Start of the stretch of recording.';
comment on column kalshi.coverage_windows.recording_to is 'End of the stretch (the session''s end or last heartbeat when still open).';
comment on column kalshi.coverage_windows.opened_at is 'When the market opened, if it opened during the session.';
comment on column kalshi.coverage_windows.end_reason is 'Why the stretch ended (kalshi.coverage.end_reason); null while open.';
comment on column kalshi.coverage_windows.time_range is 'The stretch as a tstzrange [recording_from, recording_to).';

create or replace view kalshi.uncovered_windows as
with ordered as (
    select w.*,
           max(w.recording_to) over (partition by w.market_set, w.market_ticker
                                     order by w.recording_from, w.recording_to
                                     rows between unbounded preceding and current row) as covered_until,
           lead(w.recording_from) over (partition by w.market_set, w.market_ticker
                                        order by w.recording_from, w.recording_to) as next_from,
           lead(w.session_id) over (partition by w.market_set, w.market_ticker
                                    order by w.recording_from, w.recording_to) as next_session_id,
           lead(w.opened_at) over (partition by w.market_set, w.market_ticker
                                   order by w.recording_from, w.recording_to) as next_opened_at
    from kalshi.coverage_windows w
),
between_sessions as (
    -- Nobody recorded the market from the end of one stretch to the start of the next. Not a hole when the market
    -- had stopped trading (removed as inactive) and the next stretch says when it opened again: the time from that
    -- reopening to its subscription is a before_subscribed window.
    select o.market_set, o.market_ticker, o.next_session_id as session_id, o.covered_until as started_at,
           o.next_from as ended_at, 'between_sessions' as reason
    from ordered o
    where o.next_from > o.covered_until
      and not (o.end_reason = 'inactive' and o.next_opened_at is not null)
),
before_subscribed as (
    -- A market that opened during a session was recorded only from its snapshot on.
    select w.market_set, w.market_ticker, w.session_id, w.opened_at as started_at, w.recording_from as ended_at,
           'before_subscribed' as reason
    from kalshi.coverage_windows w
    where w.opened_at < w.recording_from
)
select u.market_set, u.market_ticker, u.session_id, u.started_at, u.ended_at, u.reason,
       tstzrange(u.started_at, u.ended_at, '[)') as time_range,
       extract(epoch from u.ended_at - u.started_at)::double precision as seconds
from (select * from between_sessions union all select * from before_subscribed) u
where u.ended_at > u.started_at;
comment on view kalshi.uncovered_windows is
    'Time in which no connection was recording a market of a market set, between its first and its last recorded '
    'instant: between sessions (a late start, a session that died, a pause between ad-hoc runs), and before a market '
    'that opened during a session was subscribed. Every such window is untrusted (kalshi.untrusted_windows, kind '
    'uncovered). session_id is the session that resumed recording.';

comment on column kalshi.uncovered_windows.market_set is 'Market set.';
comment on column kalshi.uncovered_windows.market_ticker is 'Market nobody was recording.';
comment on column kalshi.uncovered_windows.session_id is 'The session that resumed recording it after the window.';
comment on column kalshi.uncovered_windows.started_at is 'Start of the window.';
comment on column kalshi.uncovered_windows.ended_at is 'End of the window (recording resumed).';
comment on column kalshi.uncovered_windows.reason is
    'between_sessions (no session was recording) or before_subscribed (the market opened, or reopened, during a '
    'session and was subscribed after that).';
comment on column kalshi.uncovered_windows.time_range is 'The window as a tstzrange [started_at, ended_at).';
comment on column kalshi.uncovered_windows.seconds is 'Length of the window in seconds.';

create or replace view kalshi.untrusted_windows as
with incident as (
    select g.event_id, g.session_id, g.incident_id, g.generation, g.kind, g.sid, g.channel, g.markets,
           -- A gap is detected when the message after the missing ones arrives; the missing ones happened after
           -- the last message received in sequence, so the window starts at that message's exchange time.
           least(g.started_at,
                 (select coalesce(d.exchange_ts, d.received_at) from kalshi.orderbook_deltas d
                  where g.kind = 'gap' and g.channel = 'orderbook_delta'
                    and d.session_id = g.session_id and d.generation = g.generation
                    and d.sid = g.sid and d.seq = g.expected_seq - 1),
                 (select coalesce(t.exchange_ts, t.received_at) from kalshi.trades t
                  where g.kind = 'gap' and g.channel = 'trade'
                    and t.trade_date between (g.started_at at time zone 'UTC')::date - 1
                                         and (g.started_at at time zone 'UTC')::date
                    and t.session_id = g.session_id and t.generation = g.generation
                    and t.sid = g.sid and t.seq = g.expected_seq - 1)) as started_at,
           g.started_at as detected_at, g.ended_at, g.outcome, g.detail,
           s.market_set,
           -- Every market the session recorded: those it started with and those it followed later.
           (select coalesce(array_agg(distinct x), '{}') from unnest(s.markets || array(
               select c.market_ticker from kalshi.coverage c where c.session_id = s.session_id)) as x)
               as session_markets,
           greatest(g.started_at, coalesce(g.ended_at, s.ended_at, greatest(s.heartbeat_at, s.updated_at)))
               as effective_end,
           greatest(g.started_at, coalesce(s.ended_at, greatest(s.heartbeat_at, s.updated_at))) as session_end
    from kalshi.gap_ledger g
    join kalshi.sessions s using (session_id)
    where g.kind in ('gap', 'disconnect', 'backpressure', 'book_inconsistency', 'stale', 'subscription_error')
      and not (g.kind = 'disconnect' and coalesce(g.detail ->> 'will_reconnect', '') = 'false')
),
per_market as (
    select i.*,
           affected.market_ticker,
           case when i.kind = 'gap' and i.channel = 'orderbook_delta' and i.outcome = 'abandoned'
                then greatest(i.effective_end, coalesce(
                    (select min(snap.received_at)
                     from kalshi.orderbook_snapshots snap
                     where snap.market_ticker = affected.market_ticker
                       and snap.session_id = i.session_id
                       and snap.received_at >= i.effective_end),
                    i.session_end))
                else i.effective_end
           end as window_end
    from incident i
    cross join lateral unnest(
        case when cardinality(i.markets) = 0 then i.session_markets else i.markets end
    ) as affected(market_ticker)
)
select i.session_id,
       i.market_set,
       i.market_ticker,
       i.kind,
       i.incident_id,
       i.generation,
       i.sid,
       i.channel,
       i.started_at,
       i.detected_at,
       i.window_end as ended_at,
       i.ended_at is null as never_closed,
       i.outcome,
       tstzrange(i.started_at, i.window_end, '[]') as time_range,
       extract(epoch from i.window_end - i.started_at)::double precision as seconds,
       i.event_id,
       i.detail
from per_market i
union all
select u.session_id,
       u.market_set,
       u.market_ticker,
       'uncovered',
       null,
       null,
       null,
       null,
       u.started_at,
       u.started_at,
       u.ended_at,
       false,
       u.reason,
       u.time_range,
       u.seconds,
       null,
       jsonb_build_object('reason', u.reason)
from kalshi.uncovered_windows u;
comment on view kalshi.untrusted_windows is
    'Windows in which the recorded data of a market may be incomplete or its order book wrong: one row per gap-ledger '
    'row of a damaging kind (gap, disconnect, backpressure, book_inconsistency, stale, subscription_error; not the '
    'final disconnect that ends a session) and per market it affected, plus one row per window in which nobody was '
    'recording the market (kind uncovered: between sessions, after a session died, before a market that opened was '
    'subscribed; outcome says which). Exclude or flag data whose time falls in time_range.';
comment on column kalshi.untrusted_windows.kind is
    'Ledger kind (gap, disconnect, backpressure, book_inconsistency, stale, subscription_error) or uncovered.';
comment on column kalshi.untrusted_windows.outcome is
    'How the incident ended (snapshot, resubscribed, reconnected, abandoned, resumed; null if never closed); for '
    'uncovered windows: between_sessions or before_subscribed.';

create or replace view kalshi.session_health as
with windows as (
    select session_id,
           count(distinct incident_id) as incidents,
           count(distinct incident_id) filter (where never_closed) as incidents_never_closed,
           range_agg(time_range) as untrusted
    from kalshi.untrusted_windows
    where kind <> 'uncovered'
    group by session_id
),
uncovered as (
    select session_id, range_agg(time_range) as uncovered
    from kalshi.uncovered_windows
    group by session_id
),
dead_letters as (
    select session_id, count(*) as dead_letters
    from kalshi.dead_letter
    group by session_id
),
totals as (
    select s.session_id,
           (select coalesce(sum(value::bigint), 0) from jsonb_each_text(s.received)) as rows_received,
           (select coalesce(sum(value::bigint), 0) from jsonb_each_text(s.written)) as rows_written,
           (select coalesce(sum(value::bigint), 0) from jsonb_each_text(s.duplicates)) as rows_duplicate
    from kalshi.sessions s
)
select s.session_id,
       s.market_set,
       s.environment,
       s.status,
       s.status_message,
       (s.started_at at time zone 'UTC')::date as day,
       s.planned_start,
       s.planned_end,
       s.started_at,
       coalesce(s.ended_at, greatest(s.heartbeat_at, s.updated_at)) as recorded_until,
       s.ended_at is null and s.status = 'running' as still_running,
       cardinality(s.markets) as markets,
       extract(epoch from s.planned_end - s.planned_start)::double precision as planned_seconds,
       extract(epoch from coalesce(s.ended_at, greatest(s.heartbeat_at, s.updated_at)) - s.started_at)::double precision
           as recorded_seconds,
       coalesce(kalshi.multirange_seconds(w.untrusted), 0) as untrusted_seconds,
       s.reconnects,
       s.gaps,
       coalesce(w.incidents, 0) as incidents,
       coalesce(w.incidents_never_closed, 0) as incidents_never_closed,
       t.rows_received,
       t.rows_written,
       t.rows_duplicate,
       s.rows_spilled,
       coalesce(d.dead_letters, 0) as dead_letters,
       s.paused_count,
       s.paused_seconds,
       s.max_message_age_ms,
       s.status in ('completed', 'running') and coalesce(w.incidents_never_closed, 0) = 0
           and s.rows_spilled = 0 and coalesce(d.dead_letters, 0) = 0 as healthy,
       coalesce(kalshi.multirange_seconds(u.uncovered), 0) as uncovered_before_seconds,
       s.slot_start,
       s.slot_end,
       s.superseded_by,
       s.superseded_at
from kalshi.sessions s
join totals t using (session_id)
left join windows w using (session_id)
left join uncovered u using (session_id)
left join dead_letters d using (session_id);
comment on column kalshi.session_health.untrusted_seconds is
    'Seconds within the session in which at least one market''s data was untrusted by an incident (overlapping windows merged).';
comment on column kalshi.session_health.uncovered_before_seconds is
    'Seconds in which a market of the set was not recorded by anyone before this session picked it up (a hole since '
    'the previous session, or a market that opened and was subscribed late), over all markets, overlaps merged.';
comment on column kalshi.session_health.slot_start is 'Scheduled sessions: start of the slot the session owns.';
comment on column kalshi.session_health.slot_end is 'End of the time the session owns (scheduled: the next scheduled start).';
comment on column kalshi.session_health.superseded_by is 'The session that took over from this one (handover).';
comment on column kalshi.session_health.superseded_at is 'When it took over.';

create or replace view kalshi.data_completeness_daily as
with covered as (
    select w.market_set, w.market_ticker, w.session_id, s.status, w.time_range
    from kalshi.coverage_windows w
    join kalshi.sessions s using (session_id)
),
covered_day as (
    select c.*, (day at time zone 'UTC')::date as day,
           c.time_range * tstzrange(day, day + interval '24 hours', '[)') as in_day
    from covered c
    cross join lateral generate_series(
        date_trunc('day', lower(c.time_range), 'UTC'), upper(c.time_range), interval '24 hours') as day
),
recorded as (
    select market_set, day, market_ticker,
           range_agg(in_day) as recorded,
           -- From the first to the last recorded instant of the day: holes inside it are untrusted time.
           tstzmultirange(tstzrange(min(lower(in_day)), max(upper(in_day)), '[)')) as span,
           count(distinct session_id) as sessions,
           count(distinct session_id) filter (where status not in ('completed', 'running')) as sessions_not_completed
    from covered_day
    where not isempty(in_day)
    group by market_set, day, market_ticker
),
untrusted as (
    select w.market_set, w.market_ticker, range_agg(w.time_range) as untrusted
    from kalshi.untrusted_windows w
    group by w.market_set, w.market_ticker
)
select r.market_set,
       r.day,
       r.market_ticker,
       r.sessions,
       r.sessions_not_completed,
       kalshi.multirange_seconds(r.recorded) as recorded_seconds,
       kalshi.multirange_seconds(r.span * coalesce(u.untrusted, '{}'::tstzmultirange)) as untrusted_seconds,
       kalshi.multirange_seconds(r.span - coalesce(u.untrusted, '{}'::tstzmultirange)) as trusted_seconds,
       kalshi.multirange_seconds(r.recorded) / 86400.0 as day_recorded_fraction,
       case when kalshi.multirange_seconds(r.span) > 0
            then kalshi.multirange_seconds(r.span - coalesce(u.untrusted, '{}'::tstzmultirange))
                 / kalshi.multirange_seconds(r.span)
       end as trusted_fraction,
       r.span - coalesce(u.untrusted, '{}'::tstzmultirange) as trusted_ranges,
       r.span * coalesce(u.untrusted, '{}'::tstzmultirange) as untrusted_ranges,
       kalshi.multirange_seconds(r.span - r.recorded) as uncovered_seconds,
       kalshi.multirange_seconds(r.span) as span_seconds
from recorded r
left join untrusted u using (market_set, market_ticker);
comment on view kalshi.data_completeness_daily is
    'Data completeness per market set, UTC day and market: how much of the day was recorded (union of its sessions'' '
    'coverage) and how much of the span from the first to the last recorded instant was trustworthy: time between '
    'sessions and incidents count against it. Use trusted_ranges to restrict a query to good data.';
comment on column kalshi.data_completeness_daily.untrusted_seconds is
    'Seconds of the span inside an untrusted window (incidents and uncovered time).';
comment on column kalshi.data_completeness_daily.trusted_seconds is 'Seconds of the span outside every untrusted window.';
comment on column kalshi.data_completeness_daily.trusted_fraction is
    'trusted_seconds / span_seconds: a hole between sessions lowers it (null when nothing was recorded).';
comment on column kalshi.data_completeness_daily.trusted_ranges is 'The trustworthy time of the day, as a multirange.';
comment on column kalshi.data_completeness_daily.untrusted_ranges is 'The untrusted time of the day (incidents and holes), as a multirange.';
comment on column kalshi.data_completeness_daily.uncovered_seconds is 'Seconds of the span in which nobody recorded the market.';
comment on column kalshi.data_completeness_daily.span_seconds is 'Seconds from the first to the last recorded instant of the day.';

create or replace function kalshi.is_covered_at(market text, at timestamptz)
returns boolean
language sql
stable
parallel safe
as $$
    select exists (
        select from kalshi.coverage_windows w
        where w.market_ticker = is_covered_at.market and w.time_range @> is_covered_at.at
    )
$$;
comment on function kalshi.is_covered_at(text, timestamptz) is
    'True when some session was recording the market at the instant at (kalshi.coverage_windows).';

-- book_at: the book is rebuilt from a stream that was being recorded at the instant asked for: the latest snapshot
-- received at or before it by a session whose coverage contains the instant (across a handover both sessions may
-- have a snapshot of a market, and the predecessor's stream stops soon after); trusted only when such a session
-- exists and no untrusted window covers the instant. With no session recording, the latest snapshot is still used
-- (trusted = false).
create or replace function kalshi.book_at(market text, at timestamptz)
returns table (
    side text,
    price numeric,
    size numeric,
    yes_price numeric,
    trusted boolean,
    session_id uuid,
    generation integer,
    sid integer,
    snapshot_seq bigint,
    last_seq bigint,
    snapshot_received_at timestamptz,
    as_of timestamptz
)
language sql
stable
parallel safe
as $$
    with recording as (
        select w.session_id
        from kalshi.coverage_windows w
        where w.market_ticker = book_at.market and w.time_range @> book_at.at
    ),
    snapshot as (
        select * from (
            (select s.session_id, s.session_date, s.generation, s.sid, s.seq, s.use_yes_price, s.received_at,
                    s.yes_prices, s.yes_sizes, s.no_prices, s.no_sizes, true as recording
             from kalshi.orderbook_snapshots s
             where s.market_ticker = book_at.market
               and s.received_at <= book_at.at
               and s.session_id in (select r.session_id from recording r)
             order by s.received_at desc, s.seq desc
             limit 1)
            union all
            (select s.session_id, s.session_date, s.generation, s.sid, s.seq, s.use_yes_price, s.received_at,
                    s.yes_prices, s.yes_sizes, s.no_prices, s.no_sizes, false as recording
             from kalshi.orderbook_snapshots s
             where s.market_ticker = book_at.market
               and s.received_at <= book_at.at
             order by s.received_at desc, s.seq desc
             limit 1)
        ) candidates
        order by recording desc
        limit 1
    ),
    changes as (
        select 'yes'::text as side, level.price, level.size as change, s.seq, s.received_at as changed_at
        from snapshot s
        cross join lateral unnest(s.yes_prices, s.yes_sizes) as level(price, size)
        union all
        select 'no'::text, level.price, level.size, s.seq, s.received_at
        from snapshot s
        cross join lateral unnest(s.no_prices, s.no_sizes) as level(price, size)
        union all
        select d.side, d.price, d.delta, d.seq, coalesce(d.exchange_ts, d.received_at)
        from snapshot s
        join kalshi.orderbook_deltas d
          on d.session_id = s.session_id
         and d.session_date = s.session_date
         and d.generation = s.generation
         and d.sid = s.sid
         and d.seq > s.seq
        where d.market_ticker = book_at.market
          and coalesce(d.exchange_ts, d.received_at) <= book_at.at
    ),
    levels as (
        select c.side, c.price, kalshi.level_size(c.change order by c.seq) as size
        from changes c
        group by c.side, c.price
    ),
    stream as (
        select s.session_id, s.generation, s.sid, s.seq as snapshot_seq, s.received_at as snapshot_received_at,
               s.use_yes_price,
               (select max(c.seq) from changes c) as last_seq,
               (select max(c.changed_at) from changes c) as as_of,
               s.recording and kalshi.is_trusted_at(book_at.market, book_at.at) as trusted
        from snapshot s
        join kalshi.sessions session using (session_id)
    )
    select l.side,
           l.price,
           l.size,
           case when l.side = 'yes' or st.use_yes_price then l.price else 1 - l.price end as yes_price,
           st.trusted,
           st.session_id,
           st.generation,
           st.sid,
           st.snapshot_seq,
           st.last_seq,
           st.snapshot_received_at,
           st.as_of
    from levels l
    cross join stream st
    where l.size > 0
    order by l.side desc, l.price desc
$$;
comment on function kalshi.book_at(text, timestamptz) is
    'The order book of a market at instant at: one row per resting level (side yes/no, leg price, contracts, the '
    'price as a YES price: a NO bid at q is a YES ask at 1 - q), rebuilt from the latest snapshot received at or '
    'before at by a session that was recording the market at that instant (kalshi.coverage_windows), plus its '
    'stream''s later deltas up to at (exchange time). trusted = false when a gap, disconnect or other incident covers '
    'at, or no session was recording the market at that instant (the latest snapshot of any session is used then): '
    'the book may be wrong. Best first within each side.';

grant execute on function kalshi.is_covered_at(text, timestamptz) to kalshi_reader;
grant select on kalshi.coverage, kalshi.coverage_windows, kalshi.uncovered_windows, kalshi.untrusted_windows,
    kalshi.session_health, kalshi.data_completeness_daily to kalshi_reader;
