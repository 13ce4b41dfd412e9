-- 032: how wide was the market: top of book and spread over time, from the ticker channel.
--
--   select * from kalshi.top_of_book where market_ticker = 'KXFED-26DEC-T4.00' and exchange_ts > now() - interval '1 hour';
--   select * from kalshi.spread_bars('5 minutes', now() - interval '1 day', now());
--
-- A ticker update carries the best YES bid and ask. The exchange reports a missing side as yes_bid = 0 (no bids)
-- or yes_ask = 1 (no offers); neither is a price a binary contract can trade at, so here they become null and the
-- spread of a one-sided book is null.

create or replace view kalshi.top_of_book as
select t.market_ticker,
       t.exchange_ts,
       nullif(t.yes_bid, 0) as yes_bid,
       nullif(t.yes_ask, 1) as yes_ask,
       nullif(t.yes_ask, 1) - nullif(t.yes_bid, 0) as spread,
       (nullif(t.yes_ask, 1) + nullif(t.yes_bid, 0)) / 2 as mid,
       t.yes_bid_size,
       t.yes_ask_size,
       t.price as last_price,
       t.last_trade_size,
       t.volume,
       t.open_interest,
       t.received_at,
       extract(epoch from t.received_at - t.exchange_ts) * 1000 as latency_ms,
       t.session_id
from kalshi.tickers t;
comment on view kalshi.top_of_book is
    'Top of book over time: one row per ticker update (best YES bid and ask with sizes, spread, mid, last trade, '
    'volume, open interest). Prices are YES prices in dollars.';
comment on column kalshi.top_of_book.market_ticker is 'Market ticker.';
comment on column kalshi.top_of_book.exchange_ts is 'Exchange time of the update.';
comment on column kalshi.top_of_book.yes_bid is 'Best YES bid (null: no bids).';
comment on column kalshi.top_of_book.yes_ask is 'Best YES ask, i.e. 1 - best NO bid (null: no offers).';
comment on column kalshi.top_of_book.spread is 'yes_ask - yes_bid (null when one side is empty).';
comment on column kalshi.top_of_book.mid is '(yes_bid + yes_ask) / 2 (null when one side is empty).';
comment on column kalshi.top_of_book.yes_bid_size is 'Contracts at the best YES bid.';
comment on column kalshi.top_of_book.yes_ask_size is 'Contracts at the best YES ask (NO bids at 1 - yes_ask).';
comment on column kalshi.top_of_book.last_price is 'Last traded YES price.';
comment on column kalshi.top_of_book.last_trade_size is 'Contracts in the last trade.';
comment on column kalshi.top_of_book.volume is 'Cumulative contracts traded.';
comment on column kalshi.top_of_book.open_interest is 'Open interest in contracts.';
comment on column kalshi.top_of_book.received_at is 'When we received the update.';
comment on column kalshi.top_of_book.latency_ms is 'received_at - exchange_ts in milliseconds (feed latency plus clock offset).';
comment on column kalshi.top_of_book.session_id is 'Recording session that stored the update.';

create or replace function kalshi.spread_bars(
    bar interval,
    from_ts timestamptz default '-infinity',
    to_ts timestamptz default 'infinity',
    market text default null
)
returns table (
    market_ticker text,
    bar_start timestamptz,
    bar_end timestamptz,
    updates bigint,
    yes_bid numeric,
    yes_ask numeric,
    spread numeric,
    mid numeric,
    spread_min numeric,
    spread_mean numeric,
    spread_max numeric,
    trusted boolean
)
language sql
stable
parallel safe
as $$
    -- The untrusted windows, computed once for all bars (not once per bar).
    with windows as materialized (
        select w.market_ticker, w.time_range
        from kalshi.untrusted_windows w
        where (spread_bars.market is null or w.market_ticker = spread_bars.market)
          and w.time_range && tstzrange(spread_bars.from_ts - spread_bars.bar, spread_bars.to_ts + spread_bars.bar, '[)')  -- bars overhang the range
    ),
    bucketed as (
        select b.*, date_bin(spread_bars.bar, b.exchange_ts, timestamptz '2000-01-01 00:00:00+00') as bar_start
        from kalshi.top_of_book b
        where b.exchange_ts >= spread_bars.from_ts
          and b.exchange_ts < spread_bars.to_ts
          and (spread_bars.market is null or b.market_ticker = spread_bars.market)
    ),
    bars as (
        select b.market_ticker,
               b.bar_start,
               b.bar_start + spread_bars.bar as bar_end,
               count(*) as updates,
               (array_agg(b.yes_bid order by b.exchange_ts desc, b.received_at desc))[1] as yes_bid,
               (array_agg(b.yes_ask order by b.exchange_ts desc, b.received_at desc))[1] as yes_ask,
               (array_agg(b.spread order by b.exchange_ts desc, b.received_at desc))[1] as spread,
               (array_agg(b.mid order by b.exchange_ts desc, b.received_at desc))[1] as mid,
               min(b.spread) as spread_min,
               avg(b.spread) as spread_mean,
               max(b.spread) as spread_max
        from bucketed b
        group by b.market_ticker, b.bar_start
    )
    select bars.*,
           not exists (
               select from windows w
               where w.market_ticker = bars.market_ticker
                 and w.time_range && tstzrange(bars.bar_start, bars.bar_end, '[)')
           ) as trusted
    from bars
$$;
comment on function kalshi.spread_bars(interval, timestamptz, timestamptz, text) is
    'Top of book per market and bar (exchange time, aligned to 2000-01-01 UTC), from ticker updates in '
    '[from_ts, to_ts): the last bid/ask/spread/mid of the bar and the min/mean/max spread over its updates. Bars '
    'without an update do not exist (the previous bar''s values still hold). trusted is false when an untrusted '
    'window overlaps the bar.';

create or replace view kalshi.spread_by_market_1m as
select * from kalshi.spread_bars(interval '1 minute');
comment on view kalshi.spread_by_market_1m is
    'One-minute top-of-book bars per market (kalshi.spread_bars over all time): closing bid, ask, spread and mid, '
    'and the min/mean/max spread of the minute''s ticker updates.';
comment on column kalshi.spread_by_market_1m.market_ticker is 'Market ticker.';
comment on column kalshi.spread_by_market_1m.bar_start is 'Start of the minute (exchange time).';
comment on column kalshi.spread_by_market_1m.bar_end is 'End of the minute (exclusive).';
comment on column kalshi.spread_by_market_1m.updates is 'Ticker updates in the minute.';
comment on column kalshi.spread_by_market_1m.yes_bid is 'Best YES bid after the last update of the minute.';
comment on column kalshi.spread_by_market_1m.yes_ask is 'Best YES ask after the last update of the minute.';
comment on column kalshi.spread_by_market_1m.spread is 'Spread after the last update of the minute.';
comment on column kalshi.spread_by_market_1m.mid is 'Mid after the last update of the minute.';
comment on column kalshi.spread_by_market_1m.spread_min is 'Smallest spread of the minute''s updates.';
comment on column kalshi.spread_by_market_1m.spread_mean is 'Mean spread over the minute''s updates (per update, not time-weighted).';
comment on column kalshi.spread_by_market_1m.spread_max is 'Largest spread of the minute''s updates.';
comment on column kalshi.spread_by_market_1m.trusted is 'False when an untrusted window overlaps the minute.';

grant select on kalshi.top_of_book, kalshi.spread_by_market_1m to kalshi_reader;
grant execute on function kalshi.spread_bars(interval, timestamptz, timestamptz, text) to kalshi_reader;
