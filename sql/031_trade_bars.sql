-- 031: what traded, at what prices: trade bars (OHLC, VWAP, volume) per market.
--
--   select * from kalshi.trade_bars('5 minutes', now() - interval '1 day', now(), 'KXFED-26DEC-T4.00');
--   select * from kalshi.trade_bars_1m where market_ticker = 'KXFED-26DEC-T4.00' order by bar_start;
--
-- Bars are aligned to the epoch (a 5-minute bar starts at :00, :05, ...), bucketed by the exchange time of the
-- trade, and only bars with at least one trade exist. Prices are YES prices in dollars, volumes contracts.

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
comment on function kalshi.trade_bars(interval, timestamptz, timestamptz, text) is
    'Trade bars of any length: one row per market and bar with at least one trade in [from_ts, to_ts) (exchange '
    'time), all markets when market is null. Bars are aligned to 2000-01-01 00:00 UTC, so a bar interval must be a '
    'fixed length (seconds to days, not months). trusted is false when an untrusted window (a gap or disconnect) '
    'overlaps the bar: some trades may be missing unless REST backfill recovered them.';

create or replace view kalshi.trade_bars_1m as
select * from kalshi.trade_bars(interval '1 minute');
comment on view kalshi.trade_bars_1m is
    'One-minute trade bars per market (kalshi.trade_bars with a 1-minute interval over all time): open, high, low, '
    'close, VWAP, volume. Filter on market_ticker and bar_start.';
comment on column kalshi.trade_bars_1m.market_ticker is 'Market ticker.';
comment on column kalshi.trade_bars_1m.bar_start is 'Start of the bar (exchange time, inclusive).';
comment on column kalshi.trade_bars_1m.bar_end is 'End of the bar (exclusive).';
comment on column kalshi.trade_bars_1m.open is 'YES price of the first trade in the bar (dollars).';
comment on column kalshi.trade_bars_1m.high is 'Highest YES price traded.';
comment on column kalshi.trade_bars_1m.low is 'Lowest YES price traded.';
comment on column kalshi.trade_bars_1m.close is 'YES price of the last trade in the bar.';
comment on column kalshi.trade_bars_1m.vwap is 'Volume-weighted average YES price: sum(price * count) / sum(count).';
comment on column kalshi.trade_bars_1m.volume is 'Contracts traded.';
comment on column kalshi.trade_bars_1m.notional is 'sum(YES price * count) in dollars (the YES side''s cost of the bar''s trades).';
comment on column kalshi.trade_bars_1m.trades is 'Number of trades.';
comment on column kalshi.trade_bars_1m.yes_taker_volume is 'Contracts whose taker bought YES (or sold NO).';
comment on column kalshi.trade_bars_1m.no_taker_volume is 'Contracts whose taker bought NO (or sold YES).';
comment on column kalshi.trade_bars_1m.block_trades is 'Trades matched off-book (RFQ/block).';
comment on column kalshi.trade_bars_1m.trusted is 'False when an untrusted window overlaps the bar (trades may be missing).';

grant select on kalshi.trade_bars_1m to kalshi_reader;
grant execute on function kalshi.trade_bars(interval, timestamptz, timestamptz, text) to kalshi_reader;
