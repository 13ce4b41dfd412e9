-- 004: daily partitions for every range-partitioned table in schema kalshi, and retention.
--
--   select kalshi.ensure_partitions(7);                 -- default partitions + one partition per UTC day,
--                                                       -- from yesterday to 7 days ahead (idempotent)
--   select * from kalshi.drop_partitions_before('2026-10-01');
--                                                       -- drop whole days before the cutoff (and purge
--                                                       -- older rows that landed in the default partitions)
-- The recorder calls ensure_partitions at every session start (covering the planned end), migrate() calls it
-- too; `kalshi-ingest db retention --keep-days N` calls drop_partitions_before(today - N).
-- Partitions are named <table>_pYYYYMMDD and cover [day 00:00 UTC, next day 00:00 UTC).

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
comment on function kalshi.ensure_partitions(integer, integer) is
    'Creates the default partition and one partition per UTC day (today - days_back .. today + days_ahead) for every '
    'range-partitioned table in schema kalshi, moving rows of a new day out of the default partition. Idempotent. '
    'Returns the number of partitions created.';

create or replace function kalshi.drop_partitions_before(cutoff date)
returns table (table_name text, action text, row_count bigint)
language plpgsql
as $$
declare
    parent record;
    child record;
    n bigint;
    bound text;
begin
    perform pg_advisory_xact_lock(hashtext('kalshi.ensure_partitions'));
    for parent in
        select c.oid, c.relname, a.attname as key_column, a.atttypid = 'date'::regtype as key_is_date
        from pg_partitioned_table p
        join pg_class c on c.oid = p.partrelid
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum = p.partattrs[0]
        where n.nspname = 'kalshi' and p.partstrat = 'r' and p.partnatts = 1
        order by c.relname
    loop
        for child in
            select ch.relname
            from pg_inherits i
            join pg_class ch on ch.oid = i.inhrelid
            where i.inhparent = parent.oid
              and ch.relname ~ ('^' || parent.relname || '_p[0-9]{8}$')
              and to_date(right(ch.relname, 8), 'YYYYMMDD') < cutoff
            order by ch.relname
        loop
            execute format('select count(*) from kalshi.%I', child.relname) into n;
            execute format('drop table kalshi.%I', child.relname);
            table_name := 'kalshi.' || child.relname;
            action := 'dropped';
            row_count := n;
            return next;
        end loop;
        if parent.key_is_date then
            bound := cutoff::text;
        else
            bound := (cutoff::timestamp at time zone 'UTC')::text;
        end if;
        if to_regclass(format('kalshi.%I', parent.relname || '_default')) is not null then
            execute format('delete from kalshi.%I where %I < %L', parent.relname || '_default', parent.key_column, bound);
            get diagnostics n = row_count;
            if n > 0 then
                table_name := 'kalshi.' || parent.relname || '_default';
                action := 'purged';
                row_count := n;
                return next;
            end if;
        end if;
    end loop;
end;
$$;
comment on function kalshi.drop_partitions_before(date) is
    'Retention: drops every daily partition of the kalshi partitioned tables whose day is before cutoff and deletes '
    'older rows from the default partitions. Returns what was dropped or purged, with row counts. Sessions, the gap '
    'ledger, dead letters and the small unpartitioned tables are kept.';
