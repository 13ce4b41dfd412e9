-- 034: the order book of a market at any moment, rebuilt from the stored snapshots and deltas.
--
--   select * from kalshi.book_at('KXFED-26DEC-T4.00', '2026-11-25 10:15:00+00');
--   select side, yes_price, size from kalshi.book_at('KXFED-26DEC-T4.00', now()) where trusted;
--
-- Method: take the latest snapshot of the market received at or before `at`; within its stream (same session,
-- connection generation and subscription: seq numbers only compare within one stream) apply, in seq order, the
-- deltas with a greater seq whose exchange time (receive time when the exchange sent none) is at or before `at`;
-- a level whose size reaches zero or less is removed, and a later positive delta opens it again.
--
-- Trust caveat: the result is the book as recorded. It is exact while the stream was healthy. If a sequence gap,
-- a disconnect or another damaging incident (kalshi.untrusted_windows) covers `at`, deltas may be missing and the
-- book may be wrong until the next snapshot: every row then has trusted = false. After the recording session
-- ended the book is frozen at its last state, also reported as trusted = false. No row at all means no snapshot
-- of the market was recorded before `at`.

create or replace function kalshi.book_level_step(size numeric, change numeric)
returns numeric
language sql
immutable
strict
parallel safe
as $$ select greatest(size + change, 0) $$;
comment on function kalshi.book_level_step(numeric, numeric) is
    'Transition of kalshi.level_size: new size = old size + change, floored at 0 (a level at or below 0 is removed).';

create or replace aggregate kalshi.level_size(numeric) (
    sfunc = kalshi.book_level_step,
    stype = numeric,
    initcond = '0',
    parallel = safe
);
comment on aggregate kalshi.level_size(numeric) is
    'Size of one order book level after applying signed changes in order: level_size(change order by seq). A level '
    'that reaches zero or less is removed (size 0) and reopens with the next positive change. Feed the snapshot '
    'size first as a change from 0.';

create or replace function kalshi.is_trusted_at(market text, at timestamptz)
returns boolean
language sql
stable
parallel safe
as $$
    select not exists (
        select from kalshi.untrusted_windows w
        where w.market_ticker = is_trusted_at.market and w.time_range @> is_trusted_at.at
    )
$$;
comment on function kalshi.is_trusted_at(text, timestamptz) is
    'True when no untrusted window (gap, disconnect, ...) of the market covers the instant at.';

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
    with snapshot as (
        select s.session_id, s.session_date, s.generation, s.sid, s.seq, s.use_yes_price, s.received_at,
               s.yes_prices, s.yes_sizes, s.no_prices, s.no_sizes
        from kalshi.orderbook_snapshots s
        where s.market_ticker = book_at.market
          and s.received_at <= book_at.at
        order by s.received_at desc, s.seq desc
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
               kalshi.is_trusted_at(book_at.market, book_at.at)
                   and book_at.at <= coalesce(session.ended_at, 'infinity') as trusted
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
    'before at plus its stream''s later deltas up to at (exchange time). trusted = false when a gap, disconnect or '
    'other incident covers at, or at is after the recording session ended: the book may be wrong. Best first within '
    'each side.';

grant execute on function kalshi.book_level_step(numeric, numeric), kalshi.level_size(numeric),
    kalshi.is_trusted_at(text, timestamptz), kalshi.book_at(text, timestamptz) to kalshi_reader;
