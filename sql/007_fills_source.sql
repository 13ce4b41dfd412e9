-- 007: where a fill row came from. kalshi.fills (003) is keyed by (trade_id, order_id); the fill channel is
-- un-sequenced, so fills printed while the WebSocket is down are backfilled from GET /portfolio/fills. Both
-- sources write the same natural key (the first one stored wins: on conflict do nothing); this column tells
-- them apart. Rows from before this migration were all recorded live.

alter table kalshi.fills add column if not exists source text not null default 'ws'
    check (source in ('ws', 'rest'));
comment on column kalshi.fills.source is
    'ws = recorded live from the fill channel; rest = backfilled from GET /portfolio/fills (no post_position, '
    'exchange_index, purchased_side, subaccount, generation or sid).';
