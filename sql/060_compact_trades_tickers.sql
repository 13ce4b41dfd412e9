-- 060: compact trades and tickers (issue 14, part 1, the rest). See docs/storage.md for the design and measurements.
--
-- Before: a kalshi.trades row repeated the market ticker, the session uuid and the trade id as text, and the side
-- columns as text; a kalshi.tickers row the ticker, the market_id and the session, with a 16-byte content hash in its
-- primary key: about 320 and 300 B a row (heap + indexes). After, as 050 did for the order book deltas:
--
--   kalshi.market_keys    one row per market ticker, with a 4-byte market_key
--   kalshi.feeds          one row per (session, connection generation, subscription, market_id sent): a feed_key
--   kalshi.trade_rows     one row per trade, partitioned by trade_date like before: the trade id as a uuid, the
--                         market and feed keys, exchange and receive time, seq, yes_price, count, and one smallint
--                         of flags (the three side columns, is_block_trade, source, and which values are kept in
--                         the extras). Primary key (trade_uuid, trade_date): the idempotency key of before;
--                         index (market_key, exchange_ts): what trade_bars reads
--   kalshi.trade_extras   the rare rest, same key: a trade id that is not a lower-case uuid, a no_price other than
--                         exactly 1 - yes_price (scale included), a side value other than the usual two
--   kalshi.ticker_rows    one row per ticker update, partitioned by exchange_ts like before: market and feed keys,
--                         the values, and the first 64 bits of the content hash. Primary key (market_key,
--                         exchange_ts, content_key): the idempotency key of before (narrowed) and what top_of_book
--                         and spread_bars read
--   kalshi.ticker_extras  a content_hash that is not the md5 of the stored values (only rows inserted by hand)
--   kalshi.trades, kalshi.tickers  views with the columns, names and types of the tables they replace; INSERT and
--                         DELETE on them still work
--
-- Exactness: prices, counts and sizes stay numeric (Decimal for Decimal); no_price is rebuilt as 1 - yes_price only
-- where that is its exact value (value and scale, so the same text), the content hash is recomputed from the stored
-- values only where it is their md5 (as the writer computes it); everything else goes to the extras. Existing rows
-- are moved here; the migration checks that every row arrived and that the views show them unchanged.

create table kalshi.market_keys (
    market_key      integer generated always as identity primary key,
    market_ticker   text not null unique
);
comment on table kalshi.market_keys is
    'Market tickers of kalshi.trade_rows and kalshi.ticker_rows, each with a 4-byte market_key (060).';
comment on column kalshi.market_keys.market_key is 'Key of the market in kalshi.trade_rows and kalshi.ticker_rows.';
comment on column kalshi.market_keys.market_ticker is 'Market ticker.';

create table kalshi.feeds (
    feed_key        integer generated always as identity primary key,
    session_id      uuid,
    generation      integer,
    sid             integer,
    market_id       text not null default ''
);
-- One feed per (session_id, generation, sid, market_id), nulls not distinct: keyed on the columns with nulls
-- replaced and whether they are null (exact), so that the writer finds a feed by equalities on these expressions
-- with this one index (hash- and index-friendly, unlike "is not distinct from").
create unique index feeds_key on kalshi.feeds
    (coalesce(session_id, '00000000-0000-0000-0000-000000000000'), coalesce(generation, -1), coalesce(sid, -1),
     market_id, (session_id is null), (generation is null), (sid is null));
comment on table kalshi.feeds is
    'Where trades and ticker updates came from: one row per (session, connection generation, subscription, '
    'market_id sent), each with a 4-byte feed_key (060). Small: thousands of rows a day.';
comment on column kalshi.feeds.feed_key is 'Key of the feed in kalshi.trade_rows and kalshi.ticker_rows.';
comment on column kalshi.feeds.session_id is 'Recording session that stored the rows.';
comment on column kalshi.feeds.generation is 'Connection number within the session (null for REST).';
comment on column kalshi.feeds.sid is 'Subscription id (null for REST).';
comment on column kalshi.feeds.market_id is 'Market UUID as received (ticker updates; empty when none was sent).';

create table kalshi.trade_rows (
    exchange_ts     timestamptz,
    received_at     timestamptz not null,
    seq             bigint,
    trade_uuid      uuid not null,
    market_key      integer not null,
    feed_key        integer not null,
    trade_date      date not null,
    flags           smallint not null,
    yes_price       numeric not null,
    count           numeric not null,
    primary key (trade_uuid, trade_date)
) partition by range (trade_date);
create index trade_rows_market_time on kalshi.trade_rows (market_key, exchange_ts);
comment on table kalshi.trade_rows is
    'Public trades, compact (060): read kalshi.trades, the same rows with every column spelled out. Partitioned by '
    'trade_date.';
comment on column kalshi.trade_rows.exchange_ts is 'Execution time at the exchange.';
comment on column kalshi.trade_rows.received_at is 'When we received the trade.';
comment on column kalshi.trade_rows.seq is 'Sequence number within the subscription (null for REST).';
comment on column kalshi.trade_rows.trade_uuid is
    'The trade id as a uuid (kalshi.trade_uuid); the text is in kalshi.trade_extras when it is not a lower-case uuid.';
comment on column kalshi.trade_rows.market_key is 'The market (kalshi.market_keys).';
comment on column kalshi.trade_rows.feed_key is 'Session, connection and subscription (kalshi.feeds).';
comment on column kalshi.trade_rows.trade_date is 'UTC calendar day of the trade (partition key).';
comment on column kalshi.trade_rows.flags is
    'Bits: 0-1 taker_outcome_side, 2-3 taker_book_side, 4-5 taker_side (0 null, 1 yes/bid, 2 no/ask, 3 in '
    'kalshi.trade_extras), 6 is_block_trade, 7 source rest, 8 no_price in the extras, 9 trade_id in the extras.';
comment on column kalshi.trade_rows.yes_price is 'YES price in dollars (exact).';
comment on column kalshi.trade_rows.count is 'Contracts traded (exact).';

create table kalshi.trade_extras (
    trade_uuid          uuid not null,
    trade_date          date not null,
    trade_id            text,
    no_price            numeric,
    taker_outcome_side  text,
    taker_book_side     text,
    taker_side          text,
    primary key (trade_uuid, trade_date)
) partition by range (trade_date);
comment on table kalshi.trade_extras is
    'The rare values of kalshi.trade_rows that its flags cannot hold, same key: a trade id that is not a lower-case '
    'uuid, a no_price that is not exactly 1 - yes_price, a side value other than the usual two (060).';
comment on column kalshi.trade_extras.trade_uuid is 'The trade (kalshi.trade_rows.trade_uuid).';
comment on column kalshi.trade_extras.trade_date is 'UTC calendar day of the trade (partition key).';
comment on column kalshi.trade_extras.trade_id is 'The exchange trade id, when it is not a lower-case uuid.';
comment on column kalshi.trade_extras.no_price is 'NO price, when it is not exactly 1 - yes_price (scale included).';
comment on column kalshi.trade_extras.taker_outcome_side is 'taker_outcome_side, when it is neither yes nor no.';
comment on column kalshi.trade_extras.taker_book_side is 'taker_book_side, when it is neither bid nor ask.';
comment on column kalshi.trade_extras.taker_side is 'taker_side, when it is neither yes nor no.';

create table kalshi.ticker_rows (
    exchange_ts             timestamptz not null,
    received_at             timestamptz not null,
    content_key             bigint not null,
    dollar_volume           bigint,
    dollar_open_interest    bigint,
    market_key              integer not null,
    feed_key                integer not null,
    price                   numeric,
    yes_bid                 numeric,
    yes_ask                 numeric,
    volume                  numeric,
    open_interest           numeric,
    yes_bid_size            numeric,
    yes_ask_size            numeric,
    last_trade_size         numeric,
    primary key (market_key, exchange_ts, content_key)
) partition by range (exchange_ts);
comment on table kalshi.ticker_rows is
    'Market ticker updates, compact (060): read kalshi.tickers, the same rows with every column spelled out. '
    'Partitioned by exchange_ts.';
comment on column kalshi.ticker_rows.content_key is
    'First 64 bits of the update''s content hash (kalshi.tickers.content_hash): part of the key.';
comment on column kalshi.ticker_rows.market_key is 'The market (kalshi.market_keys).';
comment on column kalshi.ticker_rows.feed_key is 'Session, connection, subscription and market_id (kalshi.feeds).';
comment on column kalshi.ticker_rows.exchange_ts is 'Update time at the exchange (partition key).';
comment on column kalshi.ticker_rows.received_at is 'When we received the update.';
comment on column kalshi.ticker_rows.dollar_volume is 'Cumulative traded notional, whole dollars.';
comment on column kalshi.ticker_rows.dollar_open_interest is 'Open-interest notional, whole dollars.';
comment on column kalshi.ticker_rows.price is 'Last traded price in dollars (exact).';
comment on column kalshi.ticker_rows.yes_bid is 'Best YES bid in dollars.';
comment on column kalshi.ticker_rows.yes_ask is 'Best YES ask in dollars.';
comment on column kalshi.ticker_rows.volume is 'Cumulative contracts traded.';
comment on column kalshi.ticker_rows.open_interest is 'Open interest in contracts.';
comment on column kalshi.ticker_rows.yes_bid_size is 'Contracts at the best YES bid.';
comment on column kalshi.ticker_rows.yes_ask_size is 'Contracts at the best YES ask.';
comment on column kalshi.ticker_rows.last_trade_size is 'Contracts in the last trade.';

create table kalshi.ticker_extras (
    market_key      integer not null,
    exchange_ts     timestamptz not null,
    content_key     bigint not null,
    content_hash    uuid not null,
    primary key (market_key, exchange_ts, content_key)
) partition by range (exchange_ts);
comment on table kalshi.ticker_extras is
    'The content_hash of a ticker update when it is not the md5 of its values (kalshi.ticker_hash), same key (060).';
comment on column kalshi.ticker_extras.market_key is 'The market (kalshi.market_keys).';
comment on column kalshi.ticker_extras.exchange_ts is 'Update time at the exchange (partition key).';
comment on column kalshi.ticker_extras.content_key is 'First 64 bits of content_hash.';
comment on column kalshi.ticker_extras.content_hash is 'The update''s content hash as stored before 060.';

-- The encodings, as functions shared by the migration, the views, the triggers and the writer's SQL.

-- A lower-case uuid's text, tested without a regular expression (ten times faster: the triggers test every trade).
create function kalshi.is_uuid_text(value text)
returns boolean
language sql
immutable
parallel safe
as $$
    select length(value) = 36 and translate(value, '0123456789abcdef', '') = '----'
       and substr(value, 9, 1) = '-' and substr(value, 14, 1) = '-' and substr(value, 19, 1) = '-'
       and substr(value, 24, 1) = '-'
$$;
comment on function kalshi.is_uuid_text(text) is
    'Whether value is a uuid exactly as uuid::text writes it (lower-case hex digits, dashes at 9, 14, 19, 24).';

create function kalshi.trade_uuid(trade_id text)
returns uuid
language sql
immutable
parallel safe
as $$
    select case when kalshi.is_uuid_text(trade_id) then trade_id::uuid else md5(trade_id)::uuid end
$$;
comment on function kalshi.trade_uuid(text) is
    'The key of a trade id: the id itself when it is a lower-case uuid (its text is then exactly uuid::text), else '
    'the md5 of the id (the id is then kept in kalshi.trade_extras).';

create function kalshi.trade_code(value text, one text, two text)
returns integer
language sql
immutable
parallel safe
as $$
    select case when value is null then 0 when value = one then 1 when value = two then 2 else 3 end
$$;

comment on function kalshi.trade_code(text, text, text) is
    'Two bits of kalshi.trade_rows.flags: 0 when value is null, 1 when it is one, 2 when it is two, 3 otherwise '
    '(the value is then kept in kalshi.trade_extras).';

create function kalshi.trade_flags(trade_uuid uuid, trade_id text, yes_price numeric, no_price numeric, taker_outcome_side text,
                                   taker_book_side text, taker_side text, is_block_trade boolean, source text)
returns smallint
language sql
immutable
parallel safe
as $$
    -- (| and << bind alike in PostgreSQL: every term is parenthesised.)
    select (kalshi.trade_code(taker_outcome_side, 'yes', 'no')
            | (kalshi.trade_code(taker_book_side, 'bid', 'ask') << 2)
            | (kalshi.trade_code(taker_side, 'yes', 'no') << 4)
            | case when is_block_trade then 64 else 0 end
            -- Any other source is null flags: refused (not null), as the old check constraint refused it.
            | case source when 'rest' then 128 when 'ws' then 0 end
            -- Equal value and scale: the same text (Decimal for Decimal).
            | case when no_price = 1 - yes_price and scale(no_price) = scale(1 - yes_price) then 0 else 256 end
            -- The id is its key's text (kalshi.trade_uuid), or it is kept in the extras.
            | case when trade_uuid::text = trade_id then 0 else 512 end)::smallint
$$;
comment on function kalshi.trade_flags(uuid, text, numeric, numeric, text, text, text, boolean, text) is
    'The flags of a trade row (see kalshi.trade_rows.flags) from kalshi.trade_uuid(trade_id) and the trade''s '
    'columns; null for a source other than ws or rest.';

create function kalshi.trade_needs_extras(flags smallint)
returns boolean
language sql
immutable
parallel safe
as $$
    select flags & 3 = 3 or flags & 12 = 12 or flags & 48 = 48 or flags & (256 | 512) <> 0
$$;
comment on function kalshi.trade_needs_extras(smallint) is
    'Whether a trade with these flags has a value kept in kalshi.trade_extras.';

create function kalshi.ticker_hash(price numeric, yes_bid numeric, yes_ask numeric, volume numeric,
                                   open_interest numeric, dollar_volume bigint, dollar_open_interest bigint,
                                   yes_bid_size numeric, yes_ask_size numeric, last_trade_size numeric)
returns uuid
language sql
-- stable, not immutable: record output is stable, and a function is inlined only when its body
-- is no more volatile than it says (inlined, it costs what its md5 costs)
stable
parallel safe
as $$
    select md5(row(price, yes_bid, yes_ask, volume, open_interest, dollar_volume, dollar_open_interest,
                   yes_bid_size, yes_ask_size, last_trade_size)::text)::uuid
$$;
comment on function kalshi.ticker_hash(numeric, numeric, numeric, numeric, numeric, bigint, bigint, numeric,
                                       numeric, numeric) is
    'The content hash of a ticker update, as the writer computes it: md5 of its values.';

create function kalshi.ticker_content_key(price numeric, yes_bid numeric, yes_ask numeric, volume numeric,
                                          open_interest numeric, dollar_volume bigint, dollar_open_interest bigint,
                                          yes_bid_size numeric, yes_ask_size numeric, last_trade_size numeric)
returns bigint
language sql
-- stable, not immutable: record output is stable, and a function is inlined only when its body
-- is no more volatile than it says (inlined, it costs what its md5 costs)
stable
parallel safe
as $$
    select ('x' || left(md5(row(price, yes_bid, yes_ask, volume, open_interest, dollar_volume, dollar_open_interest,
                                yes_bid_size, yes_ask_size, last_trade_size)::text), 16))::bit(64)::bigint
$$;
comment on function kalshi.ticker_content_key(numeric, numeric, numeric, numeric, numeric, bigint, bigint, numeric,
                                              numeric, numeric) is
    'kalshi.hash_key(kalshi.ticker_hash(...)) computed directly (what the writer stores as content_key).';

create function kalshi.hash_key(hash uuid)
returns bigint
language sql
immutable
parallel safe
as $$
    select ('x' || left(replace(hash::text, '-', ''), 16))::bit(64)::bigint
$$;
comment on function kalshi.hash_key(uuid) is 'The first 64 bits of a content hash (kalshi.ticker_rows.content_key).';

-- One trade's extras (not inlined: it reads a table, and it is called only for rows whose flags say so, so queries
-- over the view do not plan every extras partition).
create function kalshi.trade_extra(trade_uuid uuid, trade_date date)
returns kalshi.trade_extras
language sql
stable
parallel safe
as $$
    select x.* from kalshi.trade_extras x
    where x.trade_uuid = trade_extra.trade_uuid and x.trade_date = trade_extra.trade_date
$$;
comment on function kalshi.trade_extra(uuid, date) is
    'The kalshi.trade_extras row of one trade (the view kalshi.trades reads it only where the flags say so).';

-- Partitions for every day the old tables have rows of, then the move.
alter table kalshi.trades rename to trades_050;
alter table kalshi.tickers rename to tickers_050;

do $$
declare
    day date;
    parent text;
begin
    foreach parent in array array['trade_rows', 'trade_extras', 'ticker_rows', 'ticker_extras'] loop
        execute format('create table kalshi.%I partition of kalshi.%I default', parent || '_default', parent);
    end loop;
    foreach parent in array array['trade_rows', 'trade_extras'] loop
        for day in select distinct trade_date from kalshi.trades_050 order by 1 loop
            execute format('create table kalshi.%I partition of kalshi.%I for values from (%L) to (%L)',
                           parent || '_p' || to_char(day, 'YYYYMMDD'), parent, day, day + 1);
        end loop;
    end loop;
    foreach parent in array array['ticker_rows', 'ticker_extras'] loop
        -- The old table's day partitions (rows of its default partition stay in the new default partition).
        for day in select to_date(right(c.relname, 8), 'YYYYMMDD')
                   from pg_inherits i join pg_class c on c.oid = i.inhrelid
                   where i.inhparent = 'kalshi.tickers_050'::regclass and c.relname ~ '_p[0-9]{8}$'
                   order by 1 loop
            execute format('create table kalshi.%I partition of kalshi.%I for values from (%L) to (%L)',
                           parent || '_p' || to_char(day, 'YYYYMMDD'), parent,
                           day::timestamp at time zone 'UTC', (day + 1)::timestamp at time zone 'UTC');
        end loop;
    end loop;
end;
$$;

insert into kalshi.market_keys (market_ticker)
select market_ticker from kalshi.trades_050
union
select market_ticker from kalshi.tickers_050
order by 1;

insert into kalshi.feeds (session_id, generation, sid, market_id)
select session_id, generation, sid, '' from kalshi.trades_050
union
select session_id, generation, sid, coalesce(market_id, '') from kalshi.tickers_050
order by 1, 2, 3, 4;

analyze kalshi.market_keys, kalshi.feeds;
set local enable_nestloop = off;  -- bulk joins to the small dimensions: hash joins (see 050)

insert into kalshi.trade_rows (exchange_ts, received_at, seq, trade_uuid, market_key, feed_key, trade_date, flags,
                               yes_price, count)
select t.exchange_ts, t.received_at, t.seq, kalshi.trade_uuid(t.trade_id), m.market_key, f.feed_key, t.trade_date,
       kalshi.trade_flags(kalshi.trade_uuid(t.trade_id), t.trade_id, t.yes_price, t.no_price, t.taker_outcome_side, t.taker_book_side,
                          t.taker_side, t.is_block_trade, t.source),
       t.yes_price, t.count
from kalshi.trades_050 t
join kalshi.market_keys m on m.market_ticker = t.market_ticker
join kalshi.feeds f
  on coalesce(f.session_id, '00000000-0000-0000-0000-000000000000') = coalesce(t.session_id, '00000000-0000-0000-0000-000000000000')
   and coalesce(f.generation, -1) = coalesce(t.generation, -1) and coalesce(f.sid, -1) = coalesce(t.sid, -1)
   and f.market_id = ''
   and f.session_id is not distinct from t.session_id and f.generation is not distinct from t.generation
   and f.sid is not distinct from t.sid
order by t.trade_date, m.market_key, t.exchange_ts;

insert into kalshi.trade_extras (trade_uuid, trade_date, trade_id, no_price, taker_outcome_side, taker_book_side,
                                 taker_side)
select kalshi.trade_uuid(t.trade_id), t.trade_date,
       case when f & 512 <> 0 then t.trade_id end,
       case when f & 256 <> 0 then t.no_price end,
       case when f & 3 = 3 then t.taker_outcome_side end,
       case when f & 12 = 12 then t.taker_book_side end,
       case when f & 48 = 48 then t.taker_side end
from kalshi.trades_050 t
cross join lateral (select kalshi.trade_flags(kalshi.trade_uuid(t.trade_id), t.trade_id, t.yes_price, t.no_price, t.taker_outcome_side,
                                              t.taker_book_side, t.taker_side, t.is_block_trade, t.source)) as x(f)
where kalshi.trade_needs_extras(f);

insert into kalshi.ticker_rows (exchange_ts, received_at, content_key, dollar_volume, dollar_open_interest,
                                market_key, feed_key, price, yes_bid, yes_ask, volume, open_interest, yes_bid_size,
                                yes_ask_size, last_trade_size)
select t.exchange_ts, t.received_at, kalshi.hash_key(t.content_hash), t.dollar_volume, t.dollar_open_interest,
       m.market_key, f.feed_key, t.price, t.yes_bid, t.yes_ask, t.volume, t.open_interest, t.yes_bid_size,
       t.yes_ask_size, t.last_trade_size
from kalshi.tickers_050 t
join kalshi.market_keys m on m.market_ticker = t.market_ticker
join kalshi.feeds f
  on coalesce(f.session_id, '00000000-0000-0000-0000-000000000000') = coalesce(t.session_id, '00000000-0000-0000-0000-000000000000')
   and coalesce(f.generation, -1) = coalesce(t.generation, -1) and coalesce(f.sid, -1) = coalesce(t.sid, -1)
   and f.market_id = coalesce(t.market_id, '')
   and f.session_id is not distinct from t.session_id and f.generation is not distinct from t.generation
   and f.sid is not distinct from t.sid
order by m.market_key, t.exchange_ts;

insert into kalshi.ticker_extras (market_key, exchange_ts, content_key, content_hash)
select m.market_key, t.exchange_ts, kalshi.hash_key(t.content_hash), t.content_hash
from kalshi.tickers_050 t
join kalshi.market_keys m on m.market_ticker = t.market_ticker
where t.content_hash <> kalshi.ticker_hash(t.price, t.yes_bid, t.yes_ask, t.volume, t.open_interest,
                                           t.dollar_volume, t.dollar_open_interest, t.yes_bid_size,
                                           t.yes_ask_size, t.last_trade_size);

reset enable_nestloop;

do $$
declare
    before bigint;
    after bigint;
begin
    select count(*) into before from kalshi.trades_050;
    select count(*) into after from kalshi.trade_rows;
    if before <> after then
        raise exception '060: % trades to move, % moved', before, after;
    end if;
    select count(*) into before from kalshi.tickers_050;
    select count(*) into after from kalshi.ticker_rows;
    if before <> after then
        -- Two updates of one market and exchange time whose hashes share their first 64 bits.
        raise exception '060: % ticker updates to move, % moved', before, after;
    end if;
end;
$$;

create view kalshi.trades as
select case when t.flags & 512 = 0 then t.trade_uuid::text
            else (kalshi.trade_extra(t.trade_uuid, t.trade_date)).trade_id end as trade_id,
       t.trade_date,
       m.market_ticker,
       t.yes_price,
       case when t.flags & 256 = 0 then 1 - t.yes_price
            else (kalshi.trade_extra(t.trade_uuid, t.trade_date)).no_price end as no_price,
       t.count,
       case t.flags & 3 when 0 then null when 1 then 'yes' when 2 then 'no'
            else (kalshi.trade_extra(t.trade_uuid, t.trade_date)).taker_outcome_side end as taker_outcome_side,
       case t.flags & 12 when 0 then null when 4 then 'bid' when 8 then 'ask'
            else (kalshi.trade_extra(t.trade_uuid, t.trade_date)).taker_book_side end as taker_book_side,
       case t.flags & 48 when 0 then null when 16 then 'yes' when 32 then 'no'
            else (kalshi.trade_extra(t.trade_uuid, t.trade_date)).taker_side end as taker_side,
       t.flags & 64 <> 0 as is_block_trade,
       t.exchange_ts,
       t.received_at,
       case when t.flags & 128 <> 0 then 'rest' else 'ws' end as source,
       f.session_id,
       f.generation,
       f.sid,
       t.seq
from kalshi.trade_rows t
join kalshi.market_keys m on m.market_key = t.market_key
left join kalshi.feeds f on f.feed_key = t.feed_key;  -- always there; left: not joined when not read
alter view kalshi.trades alter column is_block_trade set default false;
comment on view kalshi.trades is
    'Public trades (channel trade, plus REST backfill), one row per trade_id. Stored compactly in '
    'kalshi.trade_rows, _extras, kalshi.market_keys and kalshi.feeds (060); rows inserted here are stored there.';
comment on column kalshi.trades.trade_id is 'Exchange trade id (the same id on the WebSocket, REST and in fills).';
comment on column kalshi.trades.trade_date is 'UTC calendar day of the trade (from exchange_ts, else received_at).';
comment on column kalshi.trades.market_ticker is 'Market ticker.';
comment on column kalshi.trades.yes_price is 'YES price of the trade in dollars (exact, up to 4 decimals; sub-penny prices exist).';
comment on column kalshi.trades.no_price is 'NO price of the trade in dollars (= 1 - yes_price).';
comment on column kalshi.trades.count is 'Contracts traded (exact, 2 decimals; fractional contracts exist).';
comment on column kalshi.trades.taker_outcome_side is 'Outcome the taker is now long: yes (bought YES or sold NO) or no.';
comment on column kalshi.trades.taker_book_side is 'Same bit as taker_outcome_side: bid = yes, ask = no.';
comment on column kalshi.trades.taker_side is 'Deprecated legacy taker direction (yes/no), kept as received.';
comment on column kalshi.trades.is_block_trade is 'True when the trade was matched off-book (RFQ/block).';
comment on column kalshi.trades.exchange_ts is 'Execution time at the exchange.';
comment on column kalshi.trades.received_at is 'When we received the trade (WebSocket frame, or REST response for backfilled trades).';
comment on column kalshi.trades.source is 'ws = recorded live from the WebSocket; rest = backfilled from GET /markets/trades.';
comment on column kalshi.trades.session_id is 'Recording session that stored the trade.';
comment on column kalshi.trades.generation is 'Connection number within the session (null for REST).';
comment on column kalshi.trades.sid is 'Subscription id (null for REST).';
comment on column kalshi.trades.seq is 'Sequence number within the subscription (null for REST).';

create view kalshi.tickers as
select m.market_ticker,
       t.exchange_ts,
       coalesce(x.content_hash, kalshi.ticker_hash(t.price, t.yes_bid, t.yes_ask, t.volume, t.open_interest,
                                                   t.dollar_volume, t.dollar_open_interest, t.yes_bid_size,
                                                   t.yes_ask_size, t.last_trade_size)) as content_hash,
       nullif(f.market_id, '') as market_id,
       t.price,
       t.yes_bid,
       t.yes_ask,
       t.volume,
       t.open_interest,
       t.dollar_volume,
       t.dollar_open_interest,
       t.yes_bid_size,
       t.yes_ask_size,
       t.last_trade_size,
       t.received_at,
       f.session_id,
       f.generation,
       f.sid
from kalshi.ticker_rows t
join kalshi.market_keys m on m.market_key = t.market_key
left join kalshi.feeds f on f.feed_key = t.feed_key  -- always there; left: not joined when not read
left join kalshi.ticker_extras x
  on x.market_key = t.market_key and x.exchange_ts = t.exchange_ts and x.content_key = t.content_key;
comment on view kalshi.tickers is
    'Market ticker updates (channel ticker): last price, top of book and sizes, volume and open interest. '
    'The key is content-derived (market, exchange time, hash of the values): a redelivered update is stored once, '
    'distinct updates are all kept. Stored compactly in kalshi.ticker_rows, _extras, kalshi.market_keys and '
    'kalshi.feeds (060); rows inserted here are stored there.';
comment on column kalshi.tickers.market_ticker is 'Market ticker.';
comment on column kalshi.tickers.exchange_ts is 'Update time at the exchange (receive time when the exchange sent none).';
comment on column kalshi.tickers.content_hash is 'md5 of the update''s values (part of the key; not meaningful by itself).';
comment on column kalshi.tickers.market_id is 'Market UUID.';
comment on column kalshi.tickers.price is 'Last traded price in dollars (null when the market never traded).';
comment on column kalshi.tickers.yes_bid is 'Best YES bid in dollars.';
comment on column kalshi.tickers.yes_ask is 'Best YES ask in dollars (= 1 - best NO bid).';
comment on column kalshi.tickers.volume is 'Cumulative contracts traded.';
comment on column kalshi.tickers.open_interest is 'Open interest in contracts.';
comment on column kalshi.tickers.dollar_volume is 'Cumulative traded notional, whole dollars.';
comment on column kalshi.tickers.dollar_open_interest is 'Open-interest notional, whole dollars.';
comment on column kalshi.tickers.yes_bid_size is 'Contracts at the best YES bid.';
comment on column kalshi.tickers.yes_ask_size is 'Contracts at the best YES ask.';
comment on column kalshi.tickers.last_trade_size is 'Contracts in the last trade.';
comment on column kalshi.tickers.received_at is 'When we received the update.';
comment on column kalshi.tickers.session_id is 'Recording session that first stored the update.';
comment on column kalshi.tickers.generation is 'Connection number within that session.';
comment on column kalshi.tickers.sid is 'Subscription id.';

-- Every row arrived unchanged (values compared as text: scale included).
do $$
declare
    n bigint;
begin
    select count(*) into n from (
        select trade_id, trade_date, market_ticker, yes_price::text, no_price::text, count::text,
               taker_outcome_side, taker_book_side, taker_side, is_block_trade, exchange_ts, received_at, source,
               session_id, generation, sid, seq
        from kalshi.trades_050
        except all
        select trade_id, trade_date, market_ticker, yes_price::text, no_price::text, count::text,
               taker_outcome_side, taker_book_side, taker_side, is_block_trade, exchange_ts, received_at, source,
               session_id, generation, sid, seq
        from kalshi.trades) d;
    if n <> 0 then
        raise exception '060: % trades read back differently', n;
    end if;
    select count(*) into n from (
        select market_ticker, exchange_ts, content_hash, market_id, row(price, yes_bid, yes_ask, volume,
               open_interest, dollar_volume, dollar_open_interest, yes_bid_size, yes_ask_size,
               last_trade_size)::text, received_at, session_id, generation, sid
        from kalshi.tickers_050
        except all
        select market_ticker, exchange_ts, content_hash, market_id, row(price, yes_bid, yes_ask, volume,
               open_interest, dollar_volume, dollar_open_interest, yes_bid_size, yes_ask_size,
               last_trade_size)::text, received_at, session_id, generation, sid
        from kalshi.tickers) d;
    if n <> 0 then
        raise exception '060: % ticker updates read back differently', n;
    end if;
end;
$$;

-- INSERT into the views (SQL users, tests) stores the row compactly; a row already stored is skipped.
create function kalshi.trades_insert()
returns trigger
language plpgsql
as $$
declare
    mkey integer;
    fkey integer;
    tuuid uuid := kalshi.trade_uuid(new.trade_id);
    flags smallint := kalshi.trade_flags(tuuid, new.trade_id, new.yes_price, new.no_price, new.taker_outcome_side,
                                         new.taker_book_side, new.taker_side, coalesce(new.is_block_trade, false),
                                         new.source);
    stored integer;
begin
    if flags is null then
        raise check_violation using message = format('trade source must be ws or rest, not %L', new.source);
    end if;
    insert into kalshi.market_keys (market_ticker) values (new.market_ticker) on conflict do nothing;
    select m.market_key into mkey from kalshi.market_keys m where m.market_ticker = new.market_ticker;
    insert into kalshi.feeds (session_id, generation, sid, market_id)
    values (new.session_id, new.generation, new.sid, '') on conflict do nothing;
    select f.feed_key into fkey from kalshi.feeds f
    where coalesce(f.session_id, '00000000-0000-0000-0000-000000000000') = coalesce(new.session_id, '00000000-0000-0000-0000-000000000000')
     and coalesce(f.generation, -1) = coalesce(new.generation, -1) and coalesce(f.sid, -1) = coalesce(new.sid, -1)
     and f.market_id = ''
     and f.session_id is not distinct from new.session_id and f.generation is not distinct from new.generation
     and f.sid is not distinct from new.sid;
    insert into kalshi.trade_rows (exchange_ts, received_at, seq, trade_uuid, market_key, feed_key, trade_date,
                                   flags, yes_price, count)
    values (new.exchange_ts, new.received_at, new.seq, tuuid, mkey, fkey, new.trade_date, flags, new.yes_price,
            new.count)
    on conflict do nothing;
    get diagnostics stored = row_count;
    if stored > 0 and kalshi.trade_needs_extras(flags) then
        insert into kalshi.trade_extras (trade_uuid, trade_date, trade_id, no_price, taker_outcome_side,
                                         taker_book_side, taker_side)
        values (tuuid, new.trade_date, case when flags & 512 <> 0 then new.trade_id end,
                case when flags & 256 <> 0 then new.no_price end,
                case when flags & 3 = 3 then new.taker_outcome_side end,
                case when flags & 12 = 12 then new.taker_book_side end,
                case when flags & 48 = 48 then new.taker_side end)
        on conflict do nothing;
    end if;
    return new;
end;
$$;
comment on function kalshi.trades_insert() is
    'INSTEAD OF INSERT trigger of the view kalshi.trades: stores the row in the compact tables; a trade stored '
    'before is skipped.';
create trigger trades_insert instead of insert on kalshi.trades
    for each row execute function kalshi.trades_insert();

create function kalshi.tickers_insert()
returns trigger
language plpgsql
as $$
declare
    mkey integer;
    fkey integer;
    ckey bigint := kalshi.hash_key(new.content_hash);
    stored integer;
begin
    insert into kalshi.market_keys (market_ticker) values (new.market_ticker) on conflict do nothing;
    select m.market_key into mkey from kalshi.market_keys m where m.market_ticker = new.market_ticker;
    insert into kalshi.feeds (session_id, generation, sid, market_id)
    values (new.session_id, new.generation, new.sid, coalesce(new.market_id, '')) on conflict do nothing;
    select f.feed_key into fkey from kalshi.feeds f
    where coalesce(f.session_id, '00000000-0000-0000-0000-000000000000') = coalesce(new.session_id, '00000000-0000-0000-0000-000000000000')
     and coalesce(f.generation, -1) = coalesce(new.generation, -1) and coalesce(f.sid, -1) = coalesce(new.sid, -1)
     and f.market_id = coalesce(new.market_id, '')
     and f.session_id is not distinct from new.session_id and f.generation is not distinct from new.generation
     and f.sid is not distinct from new.sid;
    insert into kalshi.ticker_rows (exchange_ts, received_at, content_key, dollar_volume, dollar_open_interest,
                                    market_key, feed_key, price, yes_bid, yes_ask, volume, open_interest,
                                    yes_bid_size, yes_ask_size, last_trade_size)
    values (new.exchange_ts, new.received_at, ckey, new.dollar_volume, new.dollar_open_interest, mkey, fkey,
            new.price, new.yes_bid, new.yes_ask, new.volume, new.open_interest, new.yes_bid_size, new.yes_ask_size,
            new.last_trade_size)
    on conflict do nothing;
    get diagnostics stored = row_count;
    if stored > 0 and new.content_hash <> kalshi.ticker_hash(new.price, new.yes_bid, new.yes_ask, new.volume,
            new.open_interest, new.dollar_volume, new.dollar_open_interest, new.yes_bid_size, new.yes_ask_size,
            new.last_trade_size) then
        insert into kalshi.ticker_extras (market_key, exchange_ts, content_key, content_hash)
        values (mkey, new.exchange_ts, ckey, new.content_hash)
        on conflict do nothing;
    end if;
    return new;
end;
$$;
comment on function kalshi.tickers_insert() is
    'INSTEAD OF INSERT trigger of the view kalshi.tickers: stores the row in the compact tables; an update stored '
    'before is skipped.';
create trigger tickers_insert instead of insert on kalshi.tickers
    for each row execute function kalshi.tickers_insert();

-- DELETE from the views (SQL users, tests) deletes the stored rows (the markets and feeds stay: small).
create function kalshi.trades_delete()
returns trigger
language plpgsql
as $$
declare
    tuuid uuid := kalshi.trade_uuid(old.trade_id);
begin
    delete from kalshi.trade_extras x where x.trade_uuid = tuuid and x.trade_date = old.trade_date;
    delete from kalshi.trade_rows t where t.trade_uuid = tuuid and t.trade_date = old.trade_date;
    return old;
end;
$$;
comment on function kalshi.trades_delete() is
    'INSTEAD OF DELETE trigger of the view kalshi.trades: deletes the trade from the compact tables.';
create trigger trades_delete instead of delete on kalshi.trades
    for each row execute function kalshi.trades_delete();

create function kalshi.tickers_delete()
returns trigger
language plpgsql
as $$
declare
    mkey integer := (select m.market_key from kalshi.market_keys m where m.market_ticker = old.market_ticker);
    ckey bigint := kalshi.hash_key(old.content_hash);
begin
    delete from kalshi.ticker_extras x
    where x.market_key = mkey and x.exchange_ts = old.exchange_ts and x.content_key = ckey;
    delete from kalshi.ticker_rows t
    where t.market_key = mkey and t.exchange_ts = old.exchange_ts and t.content_key = ckey;
    return old;
end;
$$;
comment on function kalshi.tickers_delete() is
    'INSTEAD OF DELETE trigger of the view kalshi.tickers: deletes the update from the compact tables.';
create trigger tickers_delete instead of delete on kalshi.tickers
    for each row execute function kalshi.tickers_delete();

-- The views bound to the old tables are bound to the new views, their text unchanged.
do $$
declare
    view_name text;
begin
    foreach view_name in array array['kalshi.top_of_book', 'kalshi.untrusted_windows'] loop
        execute format('create or replace view %s as %s', view_name,
                       replace(replace(pg_get_viewdef(view_name::regclass), 'kalshi.trades_050 ', 'kalshi.trades '),
                               'kalshi.tickers_050 ', 'kalshi.tickers '));
    end loop;
end;
$$;

drop table kalshi.trades_050;
drop table kalshi.tickers_050;

grant select on kalshi.trades, kalshi.tickers, kalshi.market_keys, kalshi.feeds, kalshi.trade_rows,
    kalshi.trade_extras, kalshi.ticker_rows, kalshi.ticker_extras to kalshi_reader;
grant execute on function kalshi.is_uuid_text(text), kalshi.trade_uuid(text), kalshi.trade_code(text, text, text),
    kalshi.trade_flags(uuid, text, numeric, numeric, text, text, text, boolean, text), kalshi.trade_needs_extras(smallint),
    kalshi.ticker_hash(numeric, numeric, numeric, numeric, numeric, bigint, bigint, numeric, numeric, numeric),
    kalshi.ticker_content_key(numeric, numeric, numeric, numeric, numeric, bigint, bigint, numeric, numeric, numeric),
    kalshi.hash_key(uuid), kalshi.trade_extra(uuid, date) to kalshi_reader;
