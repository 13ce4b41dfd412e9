-- 038: the start of a sequence gap's window is looked up only in the table of the gap's channel.
--
-- kalshi.untrusted_windows starts a gap's window at the exchange time of the last message received in sequence.
-- 030-037 looked that message up in both orderbook_deltas and trades for every gap; trades have no index on
-- (session, generation, sid, seq), so each gap scanned the whole trades table. Now deltas are searched only for
-- orderbook_delta gaps (by primary key) and trades only for trade gaps, in the day partitions around the gap.
-- Same view otherwise; same columns.

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

grant select on kalshi.untrusted_windows to kalshi_reader;
