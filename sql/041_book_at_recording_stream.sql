-- 041: kalshi.book_at rebuilds the book from a stream that was being recorded at the instant asked for.
--
-- 040 took the latest snapshot received before the instant, whichever session it came from, and called the result
-- trusted when *some* session was recording the market then. Across a handover both sessions may receive a
-- snapshot of the same market (one that opened or reopened while both were connected), and the one received last
-- may be the predecessor's: once the predecessor stopped (a heartbeat after the handover), book_at kept replaying
-- that stopped stream, which lacks every later delta, and still said trusted because the successor was recording.
-- Found by tests/flows/test_schedule_e2e.py (a level 10 ms after the predecessor stopped differed from the
-- exchange's). Now the snapshot comes from a session whose coverage contains the instant (the latest such one), and
-- the answer is trusted only when it does and no untrusted window covers the instant; when no session was
-- recording, the latest snapshot is still used (trusted = false), as before.

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
