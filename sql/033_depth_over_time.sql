-- 033: how deep was the book: depth over time per market, from the depth summaries (020) computed after each
-- session.
--
--   select bucket_start, distance, bid_depth, ask_depth from kalshi.depth_over_time
--   where market_ticker = 'KXFED-26DEC-T4.00' and distance = 0.05 order by bucket_start;

create or replace view kalshi.depth_over_time as
select d.market_set,
       d.market_ticker,
       d.bucket_start,
       d.bucket_start + make_interval(secs => d.bucket_seconds) as bucket_end,
       d.distance,
       d.best_bid,
       d.best_ask,
       d.spread,
       d.spread_mean,
       d.mid,
       d.bid_depth,
       d.ask_depth,
       d.bid_depth + d.ask_depth as total_depth,
       d.bid_depth_min,
       d.ask_depth_min,
       d.imbalance,
       d.samples,
       d.updates,
       d.trusted,
       d.session_id
from kalshi.depth_summaries d;
comment on view kalshi.depth_over_time is
    'Order book depth per market, time bucket (receive time) and distance from the touch, replayed from the stored '
    'book of each session: mean contracts bid and offered within the distance, spread and imbalance. Prices are '
    'YES prices in dollars; trusted is false when the book was untrusted during the bucket.';
comment on column kalshi.depth_over_time.market_set is 'Market set of the session the book was replayed from.';
comment on column kalshi.depth_over_time.market_ticker is 'Market ticker.';
comment on column kalshi.depth_over_time.bucket_start is 'Start of the bucket.';
comment on column kalshi.depth_over_time.bucket_end is 'End of the bucket (exclusive).';
comment on column kalshi.depth_over_time.distance is 'Distance from the best price in dollars (0 = the touch only).';
comment on column kalshi.depth_over_time.best_bid is 'Best YES bid at the end of the bucket.';
comment on column kalshi.depth_over_time.best_ask is 'Best YES ask at the end of the bucket.';
comment on column kalshi.depth_over_time.spread is 'best_ask - best_bid at the end of the bucket.';
comment on column kalshi.depth_over_time.spread_mean is 'Mean sampled spread in the bucket.';
comment on column kalshi.depth_over_time.mid is 'Mid at the end of the bucket.';
comment on column kalshi.depth_over_time.bid_depth is 'Mean contracts bid for YES within distance of the best bid.';
comment on column kalshi.depth_over_time.ask_depth is 'Mean contracts offered for YES (NO bids) within distance of the best ask.';
comment on column kalshi.depth_over_time.total_depth is 'bid_depth + ask_depth.';
comment on column kalshi.depth_over_time.bid_depth_min is 'Smallest sampled bid depth in the bucket.';
comment on column kalshi.depth_over_time.ask_depth_min is 'Smallest sampled ask depth in the bucket.';
comment on column kalshi.depth_over_time.imbalance is '(bid - ask) / (bid + ask) depth: +1 only bids, -1 only offers.';
comment on column kalshi.depth_over_time.samples is 'Book states sampled in the bucket.';
comment on column kalshi.depth_over_time.updates is 'Snapshots and deltas applied in the bucket.';
comment on column kalshi.depth_over_time.trusted is 'False when the book was untrusted at some point in the bucket.';
comment on column kalshi.depth_over_time.session_id is 'Session the book was replayed from.';

grant select on kalshi.depth_over_time to kalshi_reader;
