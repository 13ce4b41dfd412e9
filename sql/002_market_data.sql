-- 002: the high-volume market data tables, range-partitioned by day.
--
-- Every partitioned table's primary key contains its partition key, and that key is a stable property of the
-- event (never the receive time), so a redelivered event always lands in the same partition and is deduplicated:
--   trades               (trade_id, trade_date)                       trade_date = UTC day of exchange_ts
--   orderbook_snapshots  (session_id, generation, sid, seq, session_date)  session_date = UTC day the session started
--   orderbook_deltas     (session_id, generation, sid, seq, session_date)
--   tickers              (market_ticker, exchange_ts, content_hash)    content_hash = md5 of the payload values
-- Daily partitions are created ahead by kalshi.ensure_partitions(); rows outside them go to the *_default
-- partition so no row is ever rejected.

create table kalshi.trades (
    trade_id            text not null,
    trade_date          date not null,
    market_ticker       text not null,
    yes_price           numeric not null,
    no_price            numeric not null,
    count               numeric not null,
    taker_outcome_side  text,
    taker_book_side     text,
    taker_side          text,
    is_block_trade      boolean not null default false,
    exchange_ts         timestamptz,
    received_at         timestamptz not null,
    source              text not null check (source in ('ws', 'rest')),
    session_id          uuid,
    generation          integer,
    sid                 integer,
    seq                 bigint,
    primary key (trade_id, trade_date)
) partition by range (trade_date);
create index trades_market_time on kalshi.trades (market_ticker, exchange_ts);
comment on table kalshi.trades is
    'Public trades (channel trade, plus REST backfill), one row per trade_id. Partitioned by trade_date.';
comment on column kalshi.trades.trade_id is 'Exchange trade id (the same id on the WebSocket, REST and in fills).';
comment on column kalshi.trades.trade_date is 'UTC calendar day of the trade (partition key; from exchange_ts, else received_at).';
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

create table kalshi.orderbook_snapshots (
    session_id      uuid not null,
    session_date    date not null,
    generation      integer not null,
    sid             integer not null,
    seq             bigint not null,
    market_ticker   text not null,
    market_id       text,
    yes_prices      numeric[] not null default '{}',
    yes_sizes       numeric[] not null default '{}',
    no_prices       numeric[] not null default '{}',
    no_sizes        numeric[] not null default '{}',
    use_yes_price   boolean not null default false,
    command_id      bigint,
    received_at     timestamptz not null,
    primary key (session_id, generation, sid, seq, session_date)
) partition by range (session_date);
create index orderbook_snapshots_market_time on kalshi.orderbook_snapshots (market_ticker, received_at);
comment on table kalshi.orderbook_snapshots is
    'Full order book snapshots (channel orderbook_delta), one row per snapshot. The book is bids only on both sides: '
    'yes_* are bids to buy YES, no_* bids to buy NO. Level i of a side is (prices[i], sizes[i]); unnest them with '
    'unnest(yes_prices, yes_sizes). Partitioned by session_date.';
comment on column kalshi.orderbook_snapshots.session_id is 'Recording session.';
comment on column kalshi.orderbook_snapshots.session_date is 'UTC day the session started (partition key).';
comment on column kalshi.orderbook_snapshots.generation is 'Connection number within the session; books of different generations are independent.';
comment on column kalshi.orderbook_snapshots.sid is 'Subscription id.';
comment on column kalshi.orderbook_snapshots.seq is 'Sequence number within the subscription; deltas with a higher seq on the same (session, generation, sid) apply on top of it.';
comment on column kalshi.orderbook_snapshots.market_ticker is 'Market ticker.';
comment on column kalshi.orderbook_snapshots.market_id is 'Market UUID.';
comment on column kalshi.orderbook_snapshots.yes_prices is 'YES bid price levels in dollars (exact), in wire order.';
comment on column kalshi.orderbook_snapshots.yes_sizes is 'Contracts resting at each YES bid level (same index as yes_prices).';
comment on column kalshi.orderbook_snapshots.no_prices is 'NO bid price levels in dollars: no-leg prices unless use_yes_price (a NO bid at q is a YES ask at 1 - q).';
comment on column kalshi.orderbook_snapshots.no_sizes is 'Contracts resting at each NO bid level (same index as no_prices).';
comment on column kalshi.orderbook_snapshots.use_yes_price is 'True when NO-side prices are reported as YES prices (subscription flag).';
comment on column kalshi.orderbook_snapshots.command_id is 'Id of the get_snapshot command this snapshot answered (null for the initial snapshot).';
comment on column kalshi.orderbook_snapshots.received_at is 'When we received the snapshot.';

create table kalshi.orderbook_deltas (
    session_id      uuid not null,
    session_date    date not null,
    generation      integer not null,
    sid             integer not null,
    seq             bigint not null,
    market_ticker   text not null,
    market_id       text,
    side            text not null,
    price           numeric not null,
    delta           numeric not null,
    client_order_id text,
    subaccount      integer,
    exchange_ts     timestamptz,
    received_at     timestamptz not null,
    primary key (session_id, generation, sid, seq, session_date)
) partition by range (session_date);
create index orderbook_deltas_market_time on kalshi.orderbook_deltas (market_ticker, received_at);
comment on table kalshi.orderbook_deltas is
    'Order book changes (channel orderbook_delta), one row per delta. Apply in seq order on top of the latest '
    'snapshot with the same (session_id, generation, sid): size[side][price] += delta; size <= 0 removes the level. '
    'Check kalshi.gap_ledger for windows where the book was not trustworthy. Partitioned by session_date.';
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

create table kalshi.tickers (
    market_ticker           text not null,
    exchange_ts             timestamptz not null,
    content_hash            uuid not null,
    market_id               text,
    price                   numeric,
    yes_bid                 numeric,
    yes_ask                 numeric,
    volume                  numeric,
    open_interest           numeric,
    dollar_volume           bigint,
    dollar_open_interest    bigint,
    yes_bid_size            numeric,
    yes_ask_size            numeric,
    last_trade_size         numeric,
    received_at             timestamptz not null,
    session_id              uuid,
    generation              integer,
    sid                     integer,
    primary key (market_ticker, exchange_ts, content_hash)
) partition by range (exchange_ts);
comment on table kalshi.tickers is
    'Market ticker updates (channel ticker): last price, top of book and sizes, volume and open interest. '
    'The key is content-derived (market, exchange time, hash of the values): a redelivered update is stored once, '
    'distinct updates are all kept. Partitioned by exchange_ts.';
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
