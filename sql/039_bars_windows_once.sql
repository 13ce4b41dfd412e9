-- 039: trade and spread bars look the untrusted windows up once per call instead of once per bar.
--
-- kalshi.trade_bars and kalshi.spread_bars (031, 032) flagged each bar with a correlated lookup in
-- kalshi.untrusted_windows, which the planner evaluated once per bar (the view joins the gap ledger, the sessions
-- and per-gap lookups): fine for a few hundred bars, slow for a day of one-minute bars over many markets. The windows
-- of the requested markets and range are now computed once (a materialised CTE) and each bar is checked against
-- that short list. Same signatures, same results; kalshi.trade_bars_1m and kalshi.spread_by_market_1m follow.

create or replace function kalshi.trade_bars(
    bar interval,
    from_ts timestamptz default '-infinity',
    to_ts timestamptz default 'infinity',
    market text default null
)
returns table (
    market_ticker text,
    bar_start timestamptz,
    bar_end timestamptz,
    open numeric,
    high numeric,
    low numeric,
    close numeric,
    vwap numeric,
    volume numeric,
    notional numeric,
    trades bigint,
    yes_taker_volume numeric,
    no_taker_volume numeric,
    block_trades bigint,
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
        where (trade_bars.market is null or w.market_ticker = trade_bars.market)
          and w.time_range && tstzrange(trade_bars.from_ts - trade_bars.bar, trade_bars.to_ts + trade_bars.bar, '[)')  -- bars overhang the range
    ),
    bucketed as (
        select t.market_ticker, t.yes_price, t.count, t.taker_outcome_side, t.is_block_trade, t.exchange_ts, t.seq,
               t.received_at, t.trade_id,
               date_bin(trade_bars.bar, t.exchange_ts, timestamptz '2000-01-01 00:00:00+00') as bar_start
        from kalshi.trades t
        where t.exchange_ts >= trade_bars.from_ts
          and t.exchange_ts < trade_bars.to_ts
          and (trade_bars.market is null or t.market_ticker = trade_bars.market)
    ),
    bars as (
        select b.market_ticker,
               b.bar_start,
               b.bar_start + trade_bars.bar as bar_end,
               -- Trades of one millisecond keep their wire order (seq), which is the exchange's matching order.
               (array_agg(b.yes_price order by b.exchange_ts, b.seq nulls last, b.received_at, b.trade_id))[1] as open,
               max(b.yes_price) as high,
               min(b.yes_price) as low,
               (array_agg(b.yes_price order by b.exchange_ts desc, b.seq desc nulls first, b.received_at desc,
                          b.trade_id desc))[1] as close,
               sum(b.yes_price * b.count) / nullif(sum(b.count), 0) as vwap,
               sum(b.count) as volume,
               sum(b.yes_price * b.count) as notional,
               count(*) as trades,
               coalesce(sum(b.count) filter (where b.taker_outcome_side = 'yes'), 0) as yes_taker_volume,
               coalesce(sum(b.count) filter (where b.taker_outcome_side = 'no'), 0) as no_taker_volume,
               count(*) filter (where b.is_block_trade) as block_trades
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

grant execute on function kalshi.trade_bars(interval, timestamptz, timestamptz, text),
    kalshi.spread_bars(interval, timestamptz, timestamptz, text) to kalshi_reader;
