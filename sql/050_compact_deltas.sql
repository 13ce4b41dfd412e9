-- 050: compact order book deltas (issue 14, part 1). See docs/storage.md for the design and the measurements.
--
-- Before: one kalshi.orderbook_deltas row repeated the session uuid, the connection generation, the subscription
-- id, the market ticker, the 36-character market_id and the side as text, and its primary key held all of them:
-- about 290 B per delta (heap + indexes). After: three tables and a view with the old name and columns.
--
--   kalshi.orderbook_delta_books   one row per (session, generation, sid, market, market_id, side): the "book"
--                                  a delta changes, with a 4-byte book_key; small (thousands of rows a day)
--   kalshi.orderbook_delta_rows    one row per delta: book_key, session_date, seq, received_at, the exchange time
--                                  as whole milliseconds before the receive millisecond (int4), price, delta.
--                                  Primary key (book_key, session_date, seq): the idempotency key (a replayed or
--                                  redelivered delta has the same book and seq) and the index book_at reads
--                                  (a market's deltas of one stream after the snapshot's seq)
--   kalshi.orderbook_delta_extras  the rare rest, same key: our own orders' client_order_id / subaccount, and the
--                                  exchange time when the int4 millisecond offset cannot hold it exactly
--   kalshi.orderbook_deltas        a view with the columns, names and types of the table it replaces (reports,
--                                  SQL users, kalshi_ingest read it unchanged); INSERT into it still works
--
-- Exactness: price and delta stay numeric (any scale, Decimal for Decimal); the exchange time is rebuilt exactly
-- (kalshi.delta_exchange_ts), or kept in extras when it is not a whole millisecond or more than 24 days from the
-- receive time. Existing deltas are moved here; the migration checks that every row arrived.

create table kalshi.orderbook_delta_books (
    book_key        integer generated always as identity primary key,
    session_id      uuid not null,
    session_date    date not null,
    generation      integer not null,
    sid             integer not null,
    market_ticker   text not null,
    market_id       text not null default '',
    side            text not null,
    unique (session_id, generation, sid, market_ticker, market_id, side)
);
create index orderbook_delta_books_market on kalshi.orderbook_delta_books (market_ticker);
comment on table kalshi.orderbook_delta_books is
    'The order books deltas apply to: one row per (session, connection generation, subscription, market, side). '
    'kalshi.orderbook_delta_rows refers to it by book_key. Read kalshi.orderbook_deltas for whole delta rows.';
comment on column kalshi.orderbook_delta_books.book_key is 'Key of the book in kalshi.orderbook_delta_rows.';
comment on column kalshi.orderbook_delta_books.session_id is 'Recording session.';
comment on column kalshi.orderbook_delta_books.session_date is 'UTC day the session started (partition key of the delta rows).';
comment on column kalshi.orderbook_delta_books.generation is 'Connection number within the session.';
comment on column kalshi.orderbook_delta_books.sid is 'Subscription id.';
comment on column kalshi.orderbook_delta_books.market_ticker is 'Market ticker.';
comment on column kalshi.orderbook_delta_books.market_id is 'Market UUID as received (empty when the delta carried none).';
comment on column kalshi.orderbook_delta_books.side is 'Which bid ladder: yes or no.';

create table kalshi.orderbook_delta_rows (
    received_at     timestamptz not null,
    seq             bigint not null,
    book_key        integer not null,
    session_date    date not null,
    exchange_lag_ms integer,
    price           numeric not null,
    delta           numeric not null,
    primary key (book_key, session_date, seq)
) partition by range (session_date);
comment on table kalshi.orderbook_delta_rows is
    'Order book deltas, compact (about 100 B a row with its key): read kalshi.orderbook_deltas, the same rows with '
    'the session, stream, market and side spelled out. Partitioned by session_date.';
comment on column kalshi.orderbook_delta_rows.received_at is 'When we received the delta.';
comment on column kalshi.orderbook_delta_rows.seq is 'Sequence number within the subscription.';
comment on column kalshi.orderbook_delta_rows.book_key is 'The book changed (kalshi.orderbook_delta_books).';
comment on column kalshi.orderbook_delta_rows.session_date is 'UTC day the session started (partition key).';
comment on column kalshi.orderbook_delta_rows.exchange_lag_ms is
    'Exchange time as whole milliseconds before the millisecond of received_at (kalshi.delta_exchange_ts rebuilds '
    'it); null when the exchange sent none or when it is kept exactly in kalshi.orderbook_delta_extras.';
comment on column kalshi.orderbook_delta_rows.price is 'Price level in dollars (exact).';
comment on column kalshi.orderbook_delta_rows.delta is 'Signed change of the resting contracts at that level.';

create table kalshi.orderbook_delta_extras (
    book_key        integer not null,
    session_date    date not null,
    seq             bigint not null,
    exchange_ts     timestamptz,
    client_order_id text,
    subaccount      integer,
    primary key (book_key, session_date, seq)
) partition by range (session_date);
comment on table kalshi.orderbook_delta_extras is
    'The rare columns of order book deltas, keyed like kalshi.orderbook_delta_rows: our own order''s '
    'client_order_id and subaccount, and the exchange time when exchange_lag_ms cannot hold it exactly.';
comment on column kalshi.orderbook_delta_extras.book_key is 'The book changed (kalshi.orderbook_delta_books).';
comment on column kalshi.orderbook_delta_extras.session_date is 'UTC day the session started (partition key).';
comment on column kalshi.orderbook_delta_extras.seq is 'Sequence number within the subscription.';
comment on column kalshi.orderbook_delta_extras.exchange_ts is
    'Exchange time, when it is not a whole millisecond or not within 24 days of the receive time.';
comment on column kalshi.orderbook_delta_extras.client_order_id is 'Our client_order_id when our own order caused the change.';
comment on column kalshi.orderbook_delta_extras.subaccount is 'Our sub-account when our own order caused the change.';

create function kalshi.delta_exchange_lag(received_at timestamptz, exchange_ts timestamptz)
returns integer
language sql
immutable
parallel safe
as $$
    select case when extract(epoch from exchange_ts) * 1000 = trunc(extract(epoch from exchange_ts) * 1000)
                 and trunc(extract(epoch from received_at) * 1000) - extract(epoch from exchange_ts) * 1000
                     between -2147483648 and 2147483647
                then (trunc(extract(epoch from received_at) * 1000) - extract(epoch from exchange_ts) * 1000)::integer
           end
$$;
comment on function kalshi.delta_exchange_lag(timestamptz, timestamptz) is
    'exchange_ts as whole milliseconds before the millisecond of received_at; null when exchange_ts is null, not a '
    'whole millisecond or too far away for an integer (such times are kept in kalshi.orderbook_delta_extras).';

create function kalshi.delta_exchange_ts(received_at timestamptz, exchange_lag_ms integer)
returns timestamptz
language sql
immutable
parallel safe
as $$
    select to_timestamp(0)
           + (trunc(extract(epoch from received_at) * 1000)::bigint - exchange_lag_ms) * interval '1 millisecond'
$$;
comment on function kalshi.delta_exchange_ts(timestamptz, integer) is
    'The exchange time of a delta from its receive time and exchange_lag_ms (null when exchange_lag_ms is null).';

-- The primary key is written in book order while a session records (every book of the session grows at once), so
-- its pages are split half full and end about 70 % full: about 40 B a delta instead of 28. A day no session writes
-- to any more is packed once by rebuilding its index full (readers of that day wait for the rebuild).
create function kalshi.delta_days_to_pack(before date)
returns table (day date, partition_name text, index_name regclass)
language plpgsql
stable
as $$
declare
    part record;
    has_rows boolean;
begin
    for part in
        select to_date(right(c.relname, 8), 'YYYYMMDD') as day, c.relname, i.indexrelid
        from pg_inherits h
        join pg_class c on c.oid = h.inhrelid
        join pg_index i on i.indrelid = c.oid and i.indisprimary
        join pg_class ic on ic.oid = i.indexrelid
        where h.inhparent = 'kalshi.orderbook_delta_rows'::regclass
          and c.relname ~ '^orderbook_delta_rows_p[0-9]{8}$'
          and to_date(right(c.relname, 8), 'YYYYMMDD') < before
          and not coalesce('fillfactor=100' = any(ic.reloptions), false)
          and not exists (select from kalshi.sessions s
                          where s.status = 'running'
                            and (s.started_at at time zone 'UTC')::date = to_date(right(c.relname, 8), 'YYYYMMDD'))
        order by 1
    loop
        execute format('select exists (select from kalshi.%I)', part.relname) into has_rows;
        continue when not has_rows;
        day := part.day;
        partition_name := 'kalshi.' || part.relname;
        index_name := part.indexrelid::regclass;
        return next;
    end loop;
end;
$$;
comment on function kalshi.delta_days_to_pack(date) is
    'The day partitions of kalshi.orderbook_delta_rows before the given day that hold rows, whose primary key is not '
    'packed yet (its fillfactor is not 100) and that no running session writes to (it started that day).';

create function kalshi.compact_delta_partitions(before date, just_day date default null)
returns table (day date, partition_name text, bytes_before bigint, bytes_after bigint)
language plpgsql
as $$
declare
    part record;
begin
    -- One packing at a time; a partition packed meanwhile by another caller is not listed any more.
    perform pg_advisory_xact_lock(hashtext('kalshi.compact_delta_partitions'));
    for part in select * from kalshi.delta_days_to_pack(before) p where just_day is null or p.day = just_day loop
        day := part.day;
        partition_name := part.partition_name;
        bytes_before := pg_relation_size(part.index_name);
        -- Packed full, and marked so (fillfactor 100) in the same transaction: the partition is not written any
        -- more (a late replay only splits a page).
        execute format('alter index %s set (fillfactor = 100)', part.index_name);
        execute format('reindex index %s', part.index_name);
        bytes_after := pg_relation_size(part.index_name);
        return next;
    end loop;
end;
$$;
comment on function kalshi.compact_delta_partitions(date, date) is
    'Rebuilds the primary key of every day partition listed by kalshi.delta_days_to_pack(before) (only the day '
    'just_day when given): packed, about 28 B a delta instead of 40, and marked packed. Returns each day and partition '
    'with its index size before and after. The archive flow runs it daily for the finished days, one day each; by '
    'hand: select * from kalshi.compact_delta_partitions(current_date).';

-- Partitions for every day the old table has rows of, then the move.
alter table kalshi.orderbook_deltas rename to orderbook_deltas_040;

do $$
declare
    day date;
    parent text;
begin
    foreach parent in array array['orderbook_delta_rows', 'orderbook_delta_extras'] loop
        execute format('create table kalshi.%I partition of kalshi.%I default', parent || '_default', parent);
        for day in select distinct session_date from kalshi.orderbook_deltas_040 order by 1 loop
            execute format('create table kalshi.%I partition of kalshi.%I for values from (%L) to (%L)',
                           parent || '_p' || to_char(day, 'YYYYMMDD'), parent, day, day + 1);
        end loop;
    end loop;
end;
$$;

insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, market_ticker, market_id, side)
select distinct session_id, session_date, generation, sid, market_ticker, coalesce(market_id, ''), side
from kalshi.orderbook_deltas_040
order by session_date, session_id, generation, sid, market_ticker, 6, side;

-- The moves below are bulk joins of every old row to its book on six columns: the planner cannot estimate such a
-- join (nor the rare rows of the extras) and, without statistics on the new books, may pick a nested loop that reads
-- a session's whole stream once per book (hours at a few million rows). Hash joins are right for every one of them.
analyze kalshi.orderbook_delta_books;
set local enable_nestloop = off;

insert into kalshi.orderbook_delta_rows (received_at, seq, book_key, session_date, exchange_lag_ms, price, delta)
select d.received_at, d.seq, b.book_key, d.session_date, kalshi.delta_exchange_lag(d.received_at, d.exchange_ts),
       d.price, d.delta
from kalshi.orderbook_deltas_040 d
join kalshi.orderbook_delta_books b
  on b.session_id = d.session_id and b.generation = d.generation and b.sid = d.sid
 and b.market_ticker = d.market_ticker and b.market_id = coalesce(d.market_id, '') and b.side = d.side
order by d.session_date, b.book_key, d.seq;

insert into kalshi.orderbook_delta_extras (book_key, session_date, seq, exchange_ts, client_order_id, subaccount)
select b.book_key, d.session_date, d.seq,
       case when kalshi.delta_exchange_lag(d.received_at, d.exchange_ts) is null then d.exchange_ts end,
       d.client_order_id, d.subaccount
from kalshi.orderbook_deltas_040 d
join kalshi.orderbook_delta_books b
  on b.session_id = d.session_id and b.generation = d.generation and b.sid = d.sid
 and b.market_ticker = d.market_ticker and b.market_id = coalesce(d.market_id, '') and b.side = d.side
where d.client_order_id is not null or d.subaccount is not null
   or (d.exchange_ts is not null and kalshi.delta_exchange_lag(d.received_at, d.exchange_ts) is null);

reset enable_nestloop;

do $$
declare
    before bigint;
    after bigint;
begin
    select count(*) into before from kalshi.orderbook_deltas_040;
    select count(*) into after from kalshi.orderbook_delta_rows;
    if before <> after then
        raise exception '050: % order book deltas to move, % moved', before, after;
    end if;
end;
$$;

create view kalshi.orderbook_deltas as
select b.session_id,
       d.session_date,
       b.generation,
       b.sid,
       d.seq,
       b.market_ticker,
       nullif(b.market_id, '') as market_id,
       b.side,
       d.price,
       d.delta,
       x.client_order_id,
       x.subaccount,
       coalesce(kalshi.delta_exchange_ts(d.received_at, d.exchange_lag_ms), x.exchange_ts) as exchange_ts,
       d.received_at
from kalshi.orderbook_delta_rows d
join kalshi.orderbook_delta_books b on b.book_key = d.book_key and b.session_date = d.session_date
left join kalshi.orderbook_delta_extras x
  on x.book_key = d.book_key and x.session_date = d.session_date and x.seq = d.seq;
comment on view kalshi.orderbook_deltas is
    'Order book changes (channel orderbook_delta), one row per delta. Apply in seq order on top of the latest '
    'snapshot with the same (session_id, generation, sid): size[side][price] += delta; size <= 0 removes the level. '
    'Check kalshi.gap_ledger for windows where the book was not trustworthy. Stored compactly in '
    'kalshi.orderbook_delta_rows, _books and _extras (050); rows inserted here are stored there.';
comment on column kalshi.orderbook_deltas.session_id is 'Recording session.';
comment on column kalshi.orderbook_deltas.session_date is 'UTC day the session started (partition key).';
comment on column kalshi.orderbook_deltas.generation is 'Connection number within the session.';
comment on column kalshi.orderbook_deltas.sid is 'Subscription id.';
comment on column kalshi.orderbook_deltas.seq is 'Sequence number within the subscription.';
comment on column kalshi.orderbook_deltas.market_ticker is 'Market ticker.';
comment on column kalshi.orderbook_deltas.market_id is 'Market UUID.';
comment on column kalshi.orderbook_deltas.side is 'Which bid ladder changed: yes or no.';
comment on column kalshi.orderbook_deltas.price is 'Price level in dollars (exact; no-leg price for side no unless the session used use_yes_price).';
comment on column kalshi.orderbook_deltas.delta is 'Signed change of the resting contracts at that level (not an absolute size).';
comment on column kalshi.orderbook_deltas.client_order_id is 'Our client_order_id when our own order caused the change.';
comment on column kalshi.orderbook_deltas.subaccount is 'Our sub-account when our own order caused the change.';
comment on column kalshi.orderbook_deltas.exchange_ts is 'Matching-engine time of the change (null when the exchange did not send it).';
comment on column kalshi.orderbook_deltas.received_at is 'When we received the delta.';

-- INSERT into the view (SQL users, tests) stores the row compactly; a row already stored is skipped.
create function kalshi.orderbook_deltas_insert()
returns trigger
language plpgsql
as $$
declare
    key integer;
    lag integer := kalshi.delta_exchange_lag(new.received_at, new.exchange_ts);
begin
    insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, market_ticker, market_id, side)
    values (new.session_id, new.session_date, new.generation, new.sid, new.market_ticker,
            coalesce(new.market_id, ''), new.side)
    on conflict do nothing;
    select b.book_key into key
    from kalshi.orderbook_delta_books b
    where b.session_id = new.session_id and b.generation = new.generation and b.sid = new.sid
      and b.market_ticker = new.market_ticker and b.market_id = coalesce(new.market_id, '') and b.side = new.side;
    insert into kalshi.orderbook_delta_rows (received_at, seq, book_key, session_date, exchange_lag_ms, price, delta)
    values (new.received_at, new.seq, key, new.session_date, lag, new.price, new.delta)
    on conflict do nothing;
    if new.client_order_id is not null or new.subaccount is not null or (new.exchange_ts is not null and lag is null) then
        insert into kalshi.orderbook_delta_extras (book_key, session_date, seq, exchange_ts, client_order_id, subaccount)
        values (key, new.session_date, new.seq, case when lag is null then new.exchange_ts end, new.client_order_id,
                new.subaccount)
        on conflict do nothing;
    end if;
    return new;
end;
$$;
comment on function kalshi.orderbook_deltas_insert() is
    'INSTEAD OF INSERT trigger of the view kalshi.orderbook_deltas: stores the row in the compact tables (its book, '
    'the delta, its extras); a delta stored before is skipped.';
create trigger orderbook_deltas_insert instead of insert on kalshi.orderbook_deltas
    for each row execute function kalshi.orderbook_deltas_insert();

-- The exchange time kept in the extras, for one delta. Not inlined (it reads a table): planned once per connection
-- and run only where exchange_lag_ms is null, so a query calling it does not plan every extras partition.
create function kalshi.delta_extra_exchange_ts(book_key integer, session_date date, seq bigint)
returns timestamptz
language sql
stable
parallel safe
as $$
    select x.exchange_ts
    from kalshi.orderbook_delta_extras x
    where x.book_key = delta_extra_exchange_ts.book_key and x.session_date = delta_extra_exchange_ts.session_date
      and x.seq = delta_extra_exchange_ts.seq
$$;
comment on function kalshi.delta_extra_exchange_ts(integer, date, bigint) is
    'The exchange time of one delta as kept in kalshi.orderbook_delta_extras (null when it is not kept there).';

-- kalshi.untrusted_windows was bound to the old table: redefined as in 040, except that the gap lookup (the delta
-- before a gap) reads the compact tables directly (the same value; planned without the extras partitions).
create or replace view kalshi.untrusted_windows as
with incident as (
    select g.event_id, g.session_id, g.incident_id, g.generation, g.kind, g.sid, g.channel, g.markets,
           -- A gap is detected when the message after the missing ones arrives; the missing ones happened after
           -- the last message received in sequence, so the window starts at that message's exchange time.
           least(g.started_at,
                 (select coalesce(kalshi.delta_exchange_ts(d.received_at, d.exchange_lag_ms),
                                  kalshi.delta_extra_exchange_ts(d.book_key, d.session_date, d.seq), d.received_at)
                  from kalshi.orderbook_delta_books b
                  join kalshi.orderbook_delta_rows d on d.book_key = b.book_key and d.session_date = b.session_date
                  where g.kind = 'gap' and g.channel = 'orderbook_delta'
                    and b.session_id = g.session_id and b.generation = g.generation
                    and b.sid = g.sid and d.seq = g.expected_seq - 1),
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

drop table kalshi.orderbook_deltas_040;

grant select on kalshi.orderbook_deltas, kalshi.orderbook_delta_books, kalshi.orderbook_delta_rows,
    kalshi.orderbook_delta_extras to kalshi_reader;
grant execute on function kalshi.delta_exchange_ts(timestamptz, integer),
    kalshi.delta_extra_exchange_ts(integer, date, bigint),
    kalshi.delta_exchange_lag(timestamptz, timestamptz) to kalshi_reader;
