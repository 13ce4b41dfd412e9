-- 005: kalshi_reader, a NOLOGIN role for reporting: read every table and view in schema kalshi, write nothing.
-- Grant it to a login role: `grant kalshi_reader to alice;`.
-- Roles are cluster-wide, so creation is guarded (several databases of one cluster may run this migration).

do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'kalshi_reader') then
        create role kalshi_reader nologin;
    end if;
exception
    when duplicate_object then null;  -- created concurrently by a migration of another database
end;
$$;
comment on role kalshi_reader is 'Read-only access to the recorded Kalshi data (schema kalshi).';

grant usage on schema kalshi to kalshi_reader;
grant select on all tables in schema kalshi to kalshi_reader;
-- Tables and views created later (report views, new migrations) by the migrating role are readable too.
alter default privileges in schema kalshi grant select on tables to kalshi_reader;
