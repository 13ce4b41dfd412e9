-- 080: order book delta rows with a 16-byte key (issue 14). See docs/storage.md, "Layout".
--
-- 050 keyed a delta by a 24-byte primary key entry (book_key int4, session_date, seq int8: 20 bytes of data, aligned
-- to 8): about 40 B a delta on the day being written, 28 once packed. Two changes make the entry 16 bytes:
--
--   seq               int4 in the rows; its high bits (seq >> 31, zero unless a stream passes 2^31 messages) are
--                     part of the book (kalshi.orderbook_delta_books.seq_high), so the view rebuilds the bigint
--                     exactly (kalshi.delta_seq) and a stream that passes 2^31 simply opens a second book
--   the key           (book_key, seq), kept per day partition: a unique index on a partitioned table must hold the
--                     partition key (session_date), but a book belongs to one session_date, so (book_key, seq) is
--                     unique across partitions as well. kalshi.ensure_partitions creates it with every partition of
--                     the delta rows; INSERT ... ON CONFLICT DO NOTHING (the writer, the view's trigger) checks the
--                     partition's unique indexes.
--
-- The heap tuple stays 64 bytes (34 bytes of data now; 32 would make it 56, but only with the exchange time in two
-- bytes, which a clock more than 32 s off the exchange's would push out of every row).
--
-- Existing deltas and extras are moved to new tables, which then take the old names; the views keep their names and
-- columns (their dependents are untouched) and the migration checks that every row arrived.

alter table kalshi.orderbook_delta_books add column seq_high bigint not null default 0;
comment on column kalshi.orderbook_delta_books.seq_high is
    'seq >> 31 of the book''s deltas (080): 0 unless the stream passed 2^31 messages; the rows keep the low 31 bits.';
do $$
declare
    old_key text;
begin
    select c.conname into strict old_key
    from pg_constraint c
    where c.conrelid = 'kalshi.orderbook_delta_books'::regclass and c.contype = 'u';
    execute format('alter table kalshi.orderbook_delta_books drop constraint %I', old_key);
end;
$$;
alter table kalshi.orderbook_delta_books add constraint orderbook_delta_books_key
    unique (session_id, generation, sid, market_ticker, market_id, side, seq_high);

create function kalshi.delta_seq(seq_high bigint, seq integer)
returns bigint
language sql
immutable
parallel safe
as $$
    select (seq_high << 31) | seq
$$;
comment on function kalshi.delta_seq(bigint, integer) is
    'A delta''s sequence number from its book''s seq_high and the row''s seq (the low 31 bits).';

create table kalshi.orderbook_delta_rows_080 (
    received_at     timestamptz not null,
    seq             integer not null,
    book_key        integer not null,
    session_date    date not null,
    exchange_lag_ms integer,
    price           numeric not null,
    delta           numeric not null
) partition by range (session_date);

create table kalshi.orderbook_delta_extras_080 (
    book_key        integer not null,
    session_date    date not null,
    seq             integer not null,
    exchange_ts     timestamptz,
    client_order_id text,
    subaccount      integer,
    primary key (book_key, session_date, seq)
) partition by range (session_date);

-- The same partitions (names and bounds) under a temporary prefix; each delta rows partition gets its key.
do $$
declare
    part record;
begin
    for part in
        select p.relname as parent, c.relname, pg_get_expr(c.relpartbound, c.oid) as bound
        from pg_inherits h
        join pg_class c on c.oid = h.inhrelid
        join pg_class p on p.oid = h.inhparent
        where h.inhparent in ('kalshi.orderbook_delta_rows'::regclass, 'kalshi.orderbook_delta_extras'::regclass)
        order by 1, 2
    loop
        execute format('create table kalshi.%I partition of kalshi.%I %s', 'x080_' || part.relname,
                       part.parent || '_080', part.bound);
        if part.parent = 'orderbook_delta_rows' then
            execute format('create unique index %I on kalshi.%I (book_key, seq)', part.relname || '_key',
                           'x080_' || part.relname);
        end if;
    end loop;
end;
$$;

-- The books of the deltas beyond 2^31 (none unless a stream passed it), then the rows, in key order.
insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, market_ticker, market_id, side,
                                          seq_high)
select distinct b.session_id, b.session_date, b.generation, b.sid, b.market_ticker, b.market_id, b.side, d.seq >> 31
from kalshi.orderbook_delta_rows d
join kalshi.orderbook_delta_books b on b.book_key = d.book_key and b.session_date = d.session_date
where d.seq >> 31 <> 0
order by 1, 2, 3, 4, 5, 6, 7, 8;

create temporary table delta_keys_080 on commit drop as
select b.book_key as old_key, b.session_date, s.seq_high, s.book_key as new_key
from kalshi.orderbook_delta_books b
join kalshi.orderbook_delta_books s
  on s.session_id = b.session_id and s.generation = b.generation and s.sid = b.sid
 and s.market_ticker = b.market_ticker and s.market_id = b.market_id and s.side = b.side
where b.seq_high = 0 and s.seq_high <> 0;

insert into kalshi.orderbook_delta_rows_080 (received_at, seq, book_key, session_date, exchange_lag_ms, price, delta)
select d.received_at, (d.seq & 2147483647)::integer, coalesce(k.new_key, d.book_key), d.session_date,
       d.exchange_lag_ms, d.price, d.delta
from kalshi.orderbook_delta_rows d
left join delta_keys_080 k on k.old_key = d.book_key and k.session_date = d.session_date and k.seq_high = d.seq >> 31
order by d.session_date, 3, 2;

insert into kalshi.orderbook_delta_extras_080 (book_key, session_date, seq, exchange_ts, client_order_id, subaccount)
select coalesce(k.new_key, x.book_key), x.session_date, (x.seq & 2147483647)::integer, x.exchange_ts,
       x.client_order_id, x.subaccount
from kalshi.orderbook_delta_extras x
left join delta_keys_080 k on k.old_key = x.book_key and k.session_date = x.session_date and k.seq_high = x.seq >> 31;

do $$
declare
    before bigint;
    after bigint;
begin
    select count(*) into before from kalshi.orderbook_delta_rows;
    select count(*) into after from kalshi.orderbook_delta_rows_080;
    if before <> after then
        raise exception '080: % order book deltas to move, % moved', before, after;
    end if;
end;
$$;

create or replace view kalshi.orderbook_deltas as
select b.session_id,
       d.session_date,
       b.generation,
       b.sid,
       kalshi.delta_seq(b.seq_high, d.seq) as seq,
       b.market_ticker,
       nullif(b.market_id, '') as market_id,
       b.side,
       d.price,
       d.delta,
       x.client_order_id,
       x.subaccount,
       coalesce(kalshi.delta_exchange_ts(d.received_at, d.exchange_lag_ms), x.exchange_ts) as exchange_ts,
       d.received_at
from kalshi.orderbook_delta_rows_080 d
join kalshi.orderbook_delta_books b on b.book_key = d.book_key and b.session_date = d.session_date
left join kalshi.orderbook_delta_extras_080 x
  on x.book_key = d.book_key and x.session_date = d.session_date and x.seq = d.seq;

-- The exchange time (receive time when the exchange sent none) of one delta of a stream, by its seq: what
-- kalshi.untrusted_windows reads for the start of a gap. A function, so a view that needs it does not depend on the
-- rows' layout.
create function kalshi.delta_time(session_id uuid, generation integer, sid integer, seq bigint)
returns timestamptz
language sql
stable
parallel safe
as $$
    select coalesce(kalshi.delta_exchange_ts(d.received_at, d.exchange_lag_ms),
                    kalshi.delta_extra_exchange_ts(d.book_key, d.session_date, d.seq), d.received_at)
    from kalshi.orderbook_delta_books b
    join kalshi.orderbook_delta_rows d on d.book_key = b.book_key and d.session_date = b.session_date
    where b.session_id = delta_time.session_id and b.generation = delta_time.generation and b.sid = delta_time.sid
      and b.seq_high = delta_time.seq >> 31 and d.seq = (delta_time.seq & 2147483647)::integer
$$;
comment on function kalshi.delta_time(uuid, integer, integer, bigint) is
    'The exchange time (receive time when none was sent) of the delta with this seq in the stream (session_id, '
    'generation, sid); null when none is stored.';

-- As in 050, with the gap lookup through kalshi.delta_time (the same value).
create or replace view kalshi.untrusted_windows as
with incident as (
    select g.event_id, g.session_id, g.incident_id, g.generation, g.kind, g.sid, g.channel, g.markets,
           -- A gap is detected when the message after the missing ones arrives; the missing ones happened after
           -- the last message received in sequence, so the window starts at that message's exchange time.
           least(g.started_at,
                 case when g.kind = 'gap' and g.channel = 'orderbook_delta'
                      then kalshi.delta_time(g.session_id, g.generation, g.sid, g.expected_seq - 1) end,
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

-- The old tables (and their partitions) go; the new ones take their names.
drop table kalshi.orderbook_delta_rows, kalshi.orderbook_delta_extras;
alter table kalshi.orderbook_delta_rows_080 rename to orderbook_delta_rows;
alter table kalshi.orderbook_delta_extras_080 rename to orderbook_delta_extras;
alter index kalshi.orderbook_delta_extras_080_pkey rename to orderbook_delta_extras_pkey;
do $$
declare
    part record;
begin
    for part in
        select c.relname
        from pg_inherits h
        join pg_class c on c.oid = h.inhrelid
        where h.inhparent in ('kalshi.orderbook_delta_rows'::regclass, 'kalshi.orderbook_delta_extras'::regclass)
        order by 1
    loop
        execute format('alter table kalshi.%I rename to %I', part.relname, substr(part.relname, 6));
    end loop;
    for part in
        select ic.relname
        from pg_inherits h
        join pg_index i on i.indrelid = h.inhrelid
        join pg_class ic on ic.oid = i.indexrelid
        where h.inhparent = 'kalshi.orderbook_delta_extras'::regclass and ic.relname like 'x080\_%'
        order by 1
    loop
        execute format('alter index kalshi.%I rename to %I', part.relname, substr(part.relname, 6));
    end loop;
end;
$$;

comment on table kalshi.orderbook_delta_rows is
    'Order book deltas, compact (about 90-97 B a row with its key, 080): read kalshi.orderbook_deltas, the same rows '
    'with the session, stream, market and side spelled out. Partitioned by session_date; each partition has the '
    'unique key (book_key, seq).';
comment on column kalshi.orderbook_delta_rows.received_at is 'When we received the delta.';
comment on column kalshi.orderbook_delta_rows.seq is
    'Sequence number within the subscription, its low 31 bits (the book has the rest: kalshi.delta_seq).';
comment on column kalshi.orderbook_delta_rows.book_key is 'The book changed (kalshi.orderbook_delta_books).';
comment on column kalshi.orderbook_delta_rows.session_date is 'UTC day the session started (partition key).';
comment on column kalshi.orderbook_delta_rows.exchange_lag_ms is
    'Exchange time as whole milliseconds before the millisecond of received_at (kalshi.delta_exchange_ts rebuilds '
    'it); null when the exchange sent none or when it is kept exactly in kalshi.orderbook_delta_extras.';
comment on column kalshi.orderbook_delta_rows.price is 'Price level in dollars (exact).';
comment on column kalshi.orderbook_delta_rows.delta is 'Signed change of the resting contracts at that level.';
comment on table kalshi.orderbook_delta_extras is
    'The rare columns of order book deltas, keyed like kalshi.orderbook_delta_rows: our own order''s '
    'client_order_id and subaccount, and the exchange time when exchange_lag_ms cannot hold it exactly.';
comment on column kalshi.orderbook_delta_extras.book_key is 'The book changed (kalshi.orderbook_delta_books).';
comment on column kalshi.orderbook_delta_extras.session_date is 'UTC day the session started (partition key).';
comment on column kalshi.orderbook_delta_extras.seq is 'Sequence number within the subscription, its low 31 bits.';
comment on column kalshi.orderbook_delta_extras.exchange_ts is
    'Exchange time, when it is not a whole millisecond or not within 24 days of the receive time.';
comment on column kalshi.orderbook_delta_extras.client_order_id is 'Our client_order_id when our own order caused the change.';
comment on column kalshi.orderbook_delta_extras.subaccount is 'Our sub-account when our own order caused the change.';

-- INSERT into the view (SQL users, tests) stores the row compactly; a row already stored is skipped.
create or replace function kalshi.orderbook_deltas_insert()
returns trigger
language plpgsql
as $$
declare
    key integer;
    lag integer := kalshi.delta_exchange_lag(new.received_at, new.exchange_ts);
    high bigint := new.seq >> 31;
    low integer := (new.seq & 2147483647)::integer;
begin
    insert into kalshi.orderbook_delta_books (session_id, session_date, generation, sid, market_ticker, market_id, side,
                                              seq_high)
    values (new.session_id, new.session_date, new.generation, new.sid, new.market_ticker,
            coalesce(new.market_id, ''), new.side, high)
    on conflict do nothing;
    select b.book_key into key
    from kalshi.orderbook_delta_books b
    where b.session_id = new.session_id and b.generation = new.generation and b.sid = new.sid
      and b.market_ticker = new.market_ticker and b.market_id = coalesce(new.market_id, '') and b.side = new.side
      and b.seq_high = high;
    insert into kalshi.orderbook_delta_rows (received_at, seq, book_key, session_date, exchange_lag_ms, price, delta)
    values (new.received_at, low, key, new.session_date, lag, new.price, new.delta)
    on conflict do nothing;
    if new.client_order_id is not null or new.subaccount is not null or (new.exchange_ts is not null and lag is null) then
        insert into kalshi.orderbook_delta_extras (book_key, session_date, seq, exchange_ts, client_order_id, subaccount)
        values (key, new.session_date, low, case when lag is null then new.exchange_ts end, new.client_order_id,
                new.subaccount)
        on conflict do nothing;
    end if;
    return new;
end;
$$;

-- 004's function, with the key of the delta rows created with each of their partitions (it is not the parent's).
create or replace function kalshi.ensure_partitions(days_ahead integer default 7, days_back integer default 1)
returns integer
language plpgsql
as $$
declare
    parent record;
    day date;
    today date := (now() at time zone 'UTC')::date;
    part text;
    default_part text;
    lo text;
    hi text;
    created integer := 0;
begin
    -- Serialise concurrent callers (two sessions starting together); held until the transaction ends.
    perform pg_advisory_xact_lock(hashtext('kalshi.ensure_partitions'));
    for parent in
        select c.relname, a.attname as key_column, a.atttypid = 'date'::regtype as key_is_date
        from pg_partitioned_table p
        join pg_class c on c.oid = p.partrelid
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum = p.partattrs[0]
        where n.nspname = 'kalshi' and p.partstrat = 'r' and p.partnatts = 1
        order by c.relname
    loop
        default_part := parent.relname || '_default';
        if to_regclass(format('kalshi.%I', default_part)) is null then
            execute format('create table kalshi.%I partition of kalshi.%I default', default_part, parent.relname);
            perform kalshi.create_partition_key(parent.relname, default_part);
        end if;
        for day in select generate_series(today - days_back, today + days_ahead, interval '1 day')::date loop
            part := parent.relname || '_p' || to_char(day, 'YYYYMMDD');
            continue when to_regclass(format('kalshi.%I', part)) is not null;
            if parent.key_is_date then
                lo := day::text;
                hi := (day + 1)::text;
            else
                lo := (day::timestamp at time zone 'UTC')::text;
                hi := ((day + 1)::timestamp at time zone 'UTC')::text;
            end if;
            -- Rows of this day may already sit in the default partition (written before the partition existed):
            -- move them into the new table before attaching it, so the attach never fails and nothing is lost.
            execute format('create table kalshi.%I (like kalshi.%I including defaults including constraints)',
                           part, parent.relname);
            perform kalshi.create_partition_key(parent.relname, part);
            execute format('with moved as (delete from kalshi.%I where %I >= %L and %I < %L returning *) '
                           'insert into kalshi.%I select * from moved',
                           default_part, parent.key_column, lo, parent.key_column, hi, part);
            execute format('alter table kalshi.%I attach partition kalshi.%I for values from (%L) to (%L)',
                           parent.relname, part, lo, hi);
            created := created + 1;
        end loop;
    end loop;
    return created;
end;
$$;

create function kalshi.create_partition_key(parent text, part text)
returns void
language plpgsql
as $$
begin
    if parent = 'orderbook_delta_rows' then
        execute format('create unique index %I on kalshi.%I (book_key, seq)', part || '_key', part);
    end if;
end;
$$;
comment on function kalshi.create_partition_key(text, text) is
    'Creates the unique key a new partition of a kalshi table has of its own (not through its parent): (book_key, '
    'seq) for kalshi.orderbook_delta_rows (080). kalshi.ensure_partitions calls it for every partition it creates.';

grant select on kalshi.orderbook_delta_rows, kalshi.orderbook_delta_extras to kalshi_reader;
grant execute on function kalshi.delta_seq(bigint, integer), kalshi.delta_time(uuid, integer, integer, bigint)
    to kalshi_reader;
