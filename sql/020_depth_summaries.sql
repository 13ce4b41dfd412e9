-- 020: depth summaries computed after each session (flows/ingest.py -> kalshi_ingest/summaries.py).
--
-- Tidy shape: one row per (session, market, time bucket, distance from the touch). The top-of-book columns
-- repeat across the distances of a bucket, so any single distance gives the bucket's prices.

create table kalshi.depth_summaries (
    session_id      uuid not null,
    market_set      text not null,
    market_ticker   text not null,
    bucket_start    timestamptz not null,
    bucket_seconds  double precision not null,
    distance        numeric not null,
    samples         integer not null,
    updates         integer not null,
    best_bid        numeric,
    best_ask        numeric,
    spread          numeric,
    spread_mean     numeric,
    mid             numeric,
    bid_depth       numeric,
    ask_depth       numeric,
    bid_depth_min   numeric,
    ask_depth_min   numeric,
    imbalance       numeric,
    trusted         boolean not null default true,
    computed_at     timestamptz not null default now(),
    primary key (session_id, market_ticker, bucket_start, distance)
);
create index depth_summaries_market_time on kalshi.depth_summaries (market_ticker, bucket_start);
comment on table kalshi.depth_summaries is
    'Order book depth per market and time bucket, replayed from the stored snapshots and deltas of one session. '
    'One row per distance from the touch; best_bid/best_ask/spread are the same on every distance of a bucket.';
comment on column kalshi.depth_summaries.session_id is 'Recording session the book was replayed from.';
comment on column kalshi.depth_summaries.market_set is 'Market set of that session.';
comment on column kalshi.depth_summaries.market_ticker is 'Market ticker.';
comment on column kalshi.depth_summaries.bucket_start is 'Start of the time bucket (receive time of the book updates).';
comment on column kalshi.depth_summaries.bucket_seconds is 'Bucket length in seconds (depth_bucket_seconds of the market set).';
comment on column kalshi.depth_summaries.distance is 'Distance from the touch in dollars: depth counts levels within best price - distance (touch included).';
comment on column kalshi.depth_summaries.samples is 'Book states sampled in the bucket (at most one per second of updates, plus the bucket end).';
comment on column kalshi.depth_summaries.updates is 'Snapshots and deltas applied in the bucket.';
comment on column kalshi.depth_summaries.best_bid is 'Best YES bid at the end of the bucket (dollars).';
comment on column kalshi.depth_summaries.best_ask is 'Best YES ask at the end of the bucket (1 - best NO bid, dollars).';
comment on column kalshi.depth_summaries.spread is 'best_ask - best_bid at the end of the bucket.';
comment on column kalshi.depth_summaries.spread_mean is 'Mean spread over the samples of the bucket.';
comment on column kalshi.depth_summaries.mid is 'Mid YES price at the end of the bucket.';
comment on column kalshi.depth_summaries.bid_depth is 'Mean contracts bid for YES within distance of the best YES bid.';
comment on column kalshi.depth_summaries.ask_depth is 'Mean contracts offered for YES (NO bids) within distance of the best YES ask.';
comment on column kalshi.depth_summaries.bid_depth_min is 'Smallest sampled bid_depth in the bucket.';
comment on column kalshi.depth_summaries.ask_depth_min is 'Smallest sampled ask_depth in the bucket.';
comment on column kalshi.depth_summaries.imbalance is '(bid_depth - ask_depth) / (bid_depth + ask_depth): +1 only bids, -1 only offers.';
comment on column kalshi.depth_summaries.trusted is 'False when the book was untrusted (a gap not yet repaired) at some point in the bucket.';
comment on column kalshi.depth_summaries.computed_at is 'When the summary was computed.';
