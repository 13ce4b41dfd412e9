-- 070: pack the finished day partitions of trades and ticker updates too (issue 14). See docs/storage.md, "Partitions,
-- retention, packing".
--
-- 050 packs a finished day partition of kalshi.orderbook_delta_rows by rebuilding its primary key full (fillfactor
-- 100, which marks it packed). The day partitions of kalshi.trade_rows and kalshi.ticker_rows (060) have the same
-- problem: the trade key (trade_uuid, trade_date) is written in random order (the ids are random uuids), the ticker
-- key (market_key, exchange_ts, content_key) and the trade index (market_key, exchange_ts) in every market at once,
-- so their pages settle about 70-75 % full. The functions below generalise 050's to the three tables and every index
-- of a partition; 050's functions keep their names and results and are redefined over them at the end (the delta
-- rows only), so the rules are written once.

create function kalshi.day_partitions_to_pack(before date)
returns table (day date, table_name text, partition_name text, index_name regclass)
language plpgsql
stable
as $$
declare
    part record;
    has_rows boolean;
begin
    for part in
        select q.part_day, q.parent, q.relname, q.oid
        from (select p.relname as parent, c.relname, c.oid,
                     -- (a case: the planner may compute the day before it tests the name, e.g. of _default)
                     case when c.relname ~ ('^' || p.relname || '_p[0-9]{8}$')
                          then to_date(right(c.relname, 8), 'YYYYMMDD') end as part_day
              from pg_inherits h
              join pg_class p on p.oid = h.inhparent
              join pg_class c on c.oid = h.inhrelid
              where h.inhparent in ('kalshi.orderbook_delta_rows'::regclass, 'kalshi.trade_rows'::regclass,
                                    'kalshi.ticker_rows'::regclass)) q
        where q.part_day < before
          and exists (select from pg_index i join pg_class ic on ic.oid = i.indexrelid
                      where i.indrelid = q.oid and not coalesce('fillfactor=100' = any(ic.reloptions), false))
          -- A session still running writes to the day it started on: its deltas (session_date) and, for a short
          -- while after midnight, trades and updates of that day's exchange times. The same rule for the three.
          and not exists (select from kalshi.sessions s
                          where s.status = 'running' and (s.started_at at time zone 'UTC')::date = q.part_day)
        order by 1, 2
    loop
        execute format('select exists (select from kalshi.%I)', part.relname) into has_rows;
        continue when not has_rows;
        for index_name in
            select i.indexrelid::regclass
            from pg_index i join pg_class ic on ic.oid = i.indexrelid
            where i.indrelid = part.oid and not coalesce('fillfactor=100' = any(ic.reloptions), false)
            order by ic.relname
        loop
            day := part.part_day;
            table_name := 'kalshi.' || part.parent;
            partition_name := 'kalshi.' || part.relname;
            return next;
        end loop;
    end loop;
end;
$$;
comment on function kalshi.day_partitions_to_pack(date) is
    'Every index not packed yet (its fillfactor is not 100) of the day partitions of kalshi.orderbook_delta_rows, '
    'kalshi.trade_rows and kalshi.ticker_rows before the given day that hold rows and whose day no running session '
    'started on; oldest day first.';

create function kalshi.compact_day_partitions(before date, just_day date default null,
                                              just_table text default null)
returns table (day date, table_name text, partition_name text, bytes_before bigint, bytes_after bigint,
               seconds double precision)
language plpgsql
as $$
declare
    part record;
    ix regclass;
    started timestamptz;
begin
    -- One packing at a time, 050's lock included; a partition packed meanwhile by another caller is not listed.
    perform pg_advisory_xact_lock(hashtext('kalshi.compact_delta_partitions'));
    for part in
        select p.day as part_day, p.table_name as parent, p.partition_name as relation,
               array_agg(p.index_name order by p.index_name::text) as indexes
        from kalshi.day_partitions_to_pack(before) p
        where (just_day is null or p.day = just_day) and (just_table is null or p.table_name = just_table)
        group by p.day, p.table_name, p.partition_name
        order by p.day, p.table_name
    loop
        started := clock_timestamp();
        day := part.part_day;
        table_name := part.parent;
        partition_name := part.relation;
        bytes_before := pg_indexes_size(part.relation::regclass);
        -- Packed full, and marked so (fillfactor 100) in the same transaction: the partition is not written any
        -- more (a late replay or backfill only splits a page).
        foreach ix in array part.indexes loop
            execute format('alter index %s set (fillfactor = 100)', ix);
            execute format('reindex index %s', ix);
        end loop;
        bytes_after := pg_indexes_size(part.relation::regclass);
        seconds := extract(epoch from clock_timestamp() - started);
        return next;
    end loop;
end;
$$;
comment on function kalshi.compact_day_partitions(date, date, text) is
    'Rebuilds full, and marks packed (fillfactor 100), every index listed by kalshi.day_partitions_to_pack(before) '
    '(only those of the day just_day, of the table just_table, e.g. ''kalshi.trade_rows'', when given): the day '
    'partitions of the delta rows, trades and ticker updates. '
    'Returns each partition packed with the size of all its indexes before and after and the seconds it took. The '
    'archive flow runs it daily for the finished days, one day per transaction; by hand: '
    'select * from kalshi.compact_day_partitions(current_date).';

-- 050's functions, same names, arguments and results, now over the ones above (the delta rows only).
create or replace function kalshi.delta_days_to_pack(before date)
returns table (day date, partition_name text, index_name regclass)
language sql
stable
as $$
    select p.day, p.partition_name, p.index_name
    from kalshi.day_partitions_to_pack(before) p
    where p.table_name = 'kalshi.orderbook_delta_rows'
$$;

create or replace function kalshi.compact_delta_partitions(before date, just_day date default null)
returns table (day date, partition_name text, bytes_before bigint, bytes_after bigint)
language sql
as $$
    select p.day, p.partition_name, p.bytes_before, p.bytes_after
    from kalshi.compact_day_partitions(before, just_day, 'kalshi.orderbook_delta_rows') p
$$;
