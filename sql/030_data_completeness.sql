-- 030: when was the record incomplete? Untrusted windows per market, session health, completeness per day.
--
-- The report views (031-035) flag or exclude time windows with these objects, so they come first:
--   kalshi.untrusted_windows        one row per (incident row of the gap ledger, market): a window in which the
--                                   recorded data of that market may be incomplete or its book wrong
--   kalshi.is_trusted(market, from, to)
--                                   true when no untrusted window of the market overlaps [from, to)
--   kalshi.session_health           one row per recording session: planned vs recorded, incidents, rows
--   kalshi.data_completeness_daily  one row per (market set, UTC day, market): seconds recorded, seconds trusted
--
-- Times in the gap ledger and the session rows are our receive times; exchange times of the data differ from them
-- by the feed latency (milliseconds), so a window's edges are accurate to that much.

create or replace function kalshi.multirange_seconds(ranges tstzmultirange)
returns double precision
language sql
immutable
parallel safe
as $$
    select coalesce(sum(extract(epoch from upper(r) - lower(r))), 0)::double precision
    from unnest(ranges) as r
    where not isempty(r) and not lower_inf(r) and not upper_inf(r)
$$;
comment on function kalshi.multirange_seconds(tstzmultirange) is
    'Total length in seconds of the (bounded) ranges of a tstzmultirange; overlapping input ranges were already merged by range_agg.';

create or replace view kalshi.untrusted_windows as
with incident as (
    select g.event_id, g.session_id, g.incident_id, g.generation, g.kind, g.sid, g.channel, g.markets,
           -- A gap is detected when the message after the missing ones arrives; the missing ones happened after
           -- the last message received in sequence, so the window starts at that message's exchange time.
           -- (Looked up by primary key for book deltas; for trades, which have no index on seq, only in the
           -- day partitions around the gap.)
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
           s.market_set, s.markets as session_markets,
           -- An incident never closed lasts until the session ended (or was last heard of, if it died).
           greatest(g.started_at, coalesce(g.ended_at, s.ended_at, s.updated_at)) as effective_end,
           greatest(g.started_at, coalesce(s.ended_at, s.updated_at)) as session_end
    from kalshi.gap_ledger g
    join kalshi.sessions s using (session_id)
    where g.kind in ('gap', 'disconnect', 'backpressure', 'book_inconsistency', 'stale', 'subscription_error')
      -- The last disconnect of a session (no reconnect follows) ends the recording; it damages nothing recorded.
      and not (g.kind = 'disconnect' and coalesce(g.detail ->> 'will_reconnect', '') = 'false')
),
per_market as (
    select i.*,
           affected.market_ticker,
           -- An order book gap whose recovery was abandoned leaves the book wrong after the incident is closed:
           -- until the next snapshot of the market (a reconnect or a later recovery), or the end of the session.
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
from per_market i;
comment on view kalshi.untrusted_windows is
    'Windows in which the recorded data of a market may be incomplete or its order book wrong: one row per gap-ledger '
    'row of a damaging kind (gap, disconnect, backpressure, book_inconsistency, stale, subscription_error; not the '
    'final disconnect that ends a session) and per market it affected (a ledger row without markets affects every '
    'market of its session). Exclude or flag data whose time falls in time_range. Trades of a disconnect window are '
    'usually backfilled from REST (source = rest); order book changes of the window are lost until the next snapshot.';
comment on column kalshi.untrusted_windows.session_id is 'Recording session of the incident.';
comment on column kalshi.untrusted_windows.market_set is 'Market set of that session.';
comment on column kalshi.untrusted_windows.market_ticker is 'Market whose data is not trustworthy in the window.';
comment on column kalshi.untrusted_windows.kind is 'Ledger kind: gap, disconnect, backpressure, book_inconsistency, stale or subscription_error.';
comment on column kalshi.untrusted_windows.incident_id is 'Incident id within the session (rows of one incident share it).';
comment on column kalshi.untrusted_windows.generation is 'Connection number on which the incident started.';
comment on column kalshi.untrusted_windows.sid is 'Subscription affected (null: the whole connection).';
comment on column kalshi.untrusted_windows.channel is 'Channel affected, when known.';
comment on column kalshi.untrusted_windows.started_at is
    'Start of the window: when the incident was detected, or for a sequence gap the exchange time of the last '
    'message received in sequence before it (the missing messages happened after that).';
comment on column kalshi.untrusted_windows.detected_at is 'When the incident was detected (gap_ledger.started_at).';
comment on column kalshi.untrusted_windows.ended_at is
    'When it was repaired; for an incident never closed, the end of its session (or the session''s last update if '
    'the recorder died); for an order book gap whose recovery was abandoned, the next snapshot of the market (or the '
    'end of the session).';
comment on column kalshi.untrusted_windows.never_closed is 'True when the incident was never repaired (the window runs to the end of the session).';
comment on column kalshi.untrusted_windows.outcome is 'How the incident ended (snapshot, resubscribed, reconnected, abandoned, resumed); null if never closed.';
comment on column kalshi.untrusted_windows.time_range is 'The window as a tstzrange (inclusive bounds), for && and @> tests.';
comment on column kalshi.untrusted_windows.seconds is 'Length of the window in seconds.';
comment on column kalshi.untrusted_windows.event_id is 'The gap-ledger row (kalshi.gap_ledger.event_id).';
comment on column kalshi.untrusted_windows.detail is 'Details recorded with the incident.';

create or replace function kalshi.is_trusted(market text, from_ts timestamptz, to_ts timestamptz)
returns boolean
language sql
stable
parallel safe
as $$
    select not exists (
        select from kalshi.untrusted_windows w
        where w.market_ticker = is_trusted.market
          and w.time_range && tstzrange(is_trusted.from_ts, is_trusted.to_ts, '[)')
    )
$$;
comment on function kalshi.is_trusted(text, timestamptz, timestamptz) is
    'True when no untrusted window (kalshi.untrusted_windows) of the market overlaps [from_ts, to_ts). It does not '
    'say the market was being recorded then; kalshi.data_completeness_daily does.';

create or replace view kalshi.session_health as
with windows as (
    select session_id,
           count(distinct incident_id) as incidents,
           count(distinct incident_id) filter (where never_closed) as incidents_never_closed,
           range_agg(time_range) as untrusted
    from kalshi.untrusted_windows
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
       coalesce(s.ended_at, s.updated_at) as recorded_until,
       s.ended_at is null and s.status = 'running' as still_running,
       cardinality(s.markets) as markets,
       extract(epoch from s.planned_end - s.planned_start)::double precision as planned_seconds,
       extract(epoch from coalesce(s.ended_at, s.updated_at) - s.started_at)::double precision as recorded_seconds,
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
           and s.rows_spilled = 0 and coalesce(d.dead_letters, 0) = 0 as healthy
from kalshi.sessions s
join totals t using (session_id)
left join windows w using (session_id)
left join dead_letters d using (session_id);
comment on view kalshi.session_health is
    'One row per recording session: planned and recorded window, how long the data was untrusted, incidents, '
    'rows received/written/duplicate/spilled, dead letters, backpressure pauses, and a healthy verdict.';
comment on column kalshi.session_health.session_id is 'Recording session.';
comment on column kalshi.session_health.market_set is 'Market set recorded.';
comment on column kalshi.session_health.environment is 'Kalshi environment (production, demo or the simulator URL).';
comment on column kalshi.session_health.status is 'Final status (running, completed, cancelled, failed, degraded).';
comment on column kalshi.session_health.status_message is 'Why the session ended with that status.';
comment on column kalshi.session_health.day is 'UTC day the session started.';
comment on column kalshi.session_health.planned_start is 'Scheduled start.';
comment on column kalshi.session_health.planned_end is 'Scheduled end (deadline).';
comment on column kalshi.session_health.started_at is 'Actual start.';
comment on column kalshi.session_health.recorded_until is 'Actual end, or the last update of a session still running (or whose recorder died).';
comment on column kalshi.session_health.still_running is 'True while the session has not ended.';
comment on column kalshi.session_health.markets is 'Number of markets subscribed.';
comment on column kalshi.session_health.planned_seconds is 'Planned length in seconds.';
comment on column kalshi.session_health.recorded_seconds is 'Recorded length in seconds (started_at to recorded_until).';
comment on column kalshi.session_health.untrusted_seconds is 'Seconds in which at least one market''s data was untrusted (overlapping windows merged).';
comment on column kalshi.session_health.reconnects is 'WebSocket reconnects.';
comment on column kalshi.session_health.gaps is 'Sequence gaps detected.';
comment on column kalshi.session_health.incidents is 'Distinct incidents that damaged the record (see kalshi.untrusted_windows).';
comment on column kalshi.session_health.incidents_never_closed is 'Incidents never repaired before the session ended.';
comment on column kalshi.session_health.rows_received is 'Rows received over all tables.';
comment on column kalshi.session_health.rows_written is 'Rows newly stored over all tables.';
comment on column kalshi.session_health.rows_duplicate is 'Rows skipped because they were already stored.';
comment on column kalshi.session_health.rows_spilled is 'Rows spilled to local files while the database was away.';
comment on column kalshi.session_health.dead_letters is 'Frames stored in kalshi.dead_letter instead of a typed table.';
comment on column kalshi.session_health.paused_count is 'Backpressure pauses.';
comment on column kalshi.session_health.paused_seconds is 'Seconds paused by backpressure.';
comment on column kalshi.session_health.max_message_age_ms is 'Largest receive-minus-exchange time seen, ms.';
comment on column kalshi.session_health.healthy is
    'True when the session completed (or is running) with every incident repaired, nothing spilled and no dead letters.';

create or replace view kalshi.data_completeness_daily as
with session_market as (
    select s.market_set, m.market_ticker, s.session_id, s.status,
           tstzrange(s.started_at, greatest(s.started_at, coalesce(s.ended_at, s.updated_at)), '[)') as recorded
    from kalshi.sessions s
    cross join lateral unnest(s.markets) as m(market_ticker)
),
session_day as (
    select sm.*, (day at time zone 'UTC')::date as day,
           sm.recorded * tstzrange(day, day + interval '24 hours', '[)') as recorded_in_day
    from session_market sm
    cross join lateral generate_series(
        date_trunc('day', lower(sm.recorded), 'UTC'), upper(sm.recorded), interval '24 hours') as day
),
recorded as (
    select market_set, day, market_ticker,
           range_agg(recorded_in_day) as recorded,
           count(distinct session_id) as sessions,
           count(distinct session_id) filter (where status not in ('completed', 'running')) as sessions_not_completed
    from session_day
    where not isempty(recorded_in_day)
    group by market_set, day, market_ticker
),
untrusted as (
    select w.market_set, w.market_ticker, range_agg(w.time_range) as untrusted, count(*) as incidents
    from kalshi.untrusted_windows w
    group by w.market_set, w.market_ticker
)
select r.market_set,
       r.day,
       r.market_ticker,
       r.sessions,
       r.sessions_not_completed,
       kalshi.multirange_seconds(r.recorded) as recorded_seconds,
       kalshi.multirange_seconds(r.recorded * coalesce(u.untrusted, '{}'::tstzmultirange)) as untrusted_seconds,
       kalshi.multirange_seconds(r.recorded - coalesce(u.untrusted, '{}'::tstzmultirange)) as trusted_seconds,
       kalshi.multirange_seconds(r.recorded) / 86400.0 as day_recorded_fraction,
       case when kalshi.multirange_seconds(r.recorded) > 0
            then kalshi.multirange_seconds(r.recorded - coalesce(u.untrusted, '{}'::tstzmultirange))
                 / kalshi.multirange_seconds(r.recorded)
       end as trusted_fraction,
       r.recorded - coalesce(u.untrusted, '{}'::tstzmultirange) as trusted_ranges,
       r.recorded * coalesce(u.untrusted, '{}'::tstzmultirange) as untrusted_ranges
from recorded r
left join untrusted u using (market_set, market_ticker);
comment on view kalshi.data_completeness_daily is
    'Data completeness per market set, UTC day and market: how much of the day was recorded (union of its sessions) '
    'and how much of that was trustworthy (no untrusted window). Use trusted_ranges to restrict a query to good data.';
comment on column kalshi.data_completeness_daily.market_set is 'Market set.';
comment on column kalshi.data_completeness_daily.day is 'UTC day.';
comment on column kalshi.data_completeness_daily.market_ticker is 'Market.';
comment on column kalshi.data_completeness_daily.sessions is 'Sessions that recorded the market that day.';
comment on column kalshi.data_completeness_daily.sessions_not_completed is 'Of those, sessions that ended cancelled, failed or degraded.';
comment on column kalshi.data_completeness_daily.recorded_seconds is 'Seconds of the day covered by at least one session.';
comment on column kalshi.data_completeness_daily.untrusted_seconds is 'Recorded seconds inside an untrusted window.';
comment on column kalshi.data_completeness_daily.trusted_seconds is 'Recorded seconds outside every untrusted window.';
comment on column kalshi.data_completeness_daily.day_recorded_fraction is 'recorded_seconds / 86400.';
comment on column kalshi.data_completeness_daily.trusted_fraction is 'trusted_seconds / recorded_seconds (null when nothing was recorded).';
comment on column kalshi.data_completeness_daily.trusted_ranges is 'The trustworthy recorded time of the day, as a multirange.';
comment on column kalshi.data_completeness_daily.untrusted_ranges is 'The untrusted recorded time of the day, as a multirange.';

grant select on kalshi.untrusted_windows, kalshi.session_health, kalshi.data_completeness_daily to kalshi_reader;
grant execute on function kalshi.multirange_seconds(tstzmultirange), kalshi.is_trusted(text, timestamptz, timestamptz)
    to kalshi_reader;
