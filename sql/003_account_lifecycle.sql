-- 003: lower-volume tables: private channels (fills, orders, positions, order groups, RFQs/quotes),
-- market and event lifecycle, and reference index values. Not partitioned.
--
-- Keys: fills (trade_id, order_id); un-sequenced messages a content key (their id + md5 of the values);
-- sequenced messages (session_id, generation, sid, seq, content_hash) with nulls not distinct, which is exactly
-- (session_id, generation, sid, seq) whenever the exchange sent a seq.

create table kalshi.fills (
    trade_id            text not null,
    order_id            text not null,
    market_ticker       text not null,
    client_order_id     text,
    exchange_index      integer,
    is_taker            boolean not null,
    outcome_side        text,
    book_side           text,
    yes_price           numeric not null,
    count               numeric not null,
    fee_cost            numeric,
    post_position       numeric,
    side                text,
    action              text,
    purchased_side      text,
    subaccount          integer,
    exchange_ts         timestamptz,
    received_at         timestamptz not null,
    session_id          uuid,
    generation          integer,
    sid                 integer,
    primary key (trade_id, order_id)
);
create index fills_market_time on kalshi.fills (market_ticker, exchange_ts);
comment on table kalshi.fills is 'Our own fills (channel fill), one row per (trade_id, order_id).';
comment on column kalshi.fills.trade_id is 'Trade id (same as the public trade).';
comment on column kalshi.fills.order_id is 'Our order id.';
comment on column kalshi.fills.market_ticker is 'Market ticker.';
comment on column kalshi.fills.client_order_id is 'Our client order id.';
comment on column kalshi.fills.exchange_index is 'Exchange shard where the fill happened.';
comment on column kalshi.fills.is_taker is 'True when we were the taker.';
comment on column kalshi.fills.outcome_side is 'Outcome this fill positioned us for (yes/no).';
comment on column kalshi.fills.book_side is 'Same bit as outcome_side (bid = yes, ask = no).';
comment on column kalshi.fills.yes_price is 'Fill price as a YES price in dollars (exact).';
comment on column kalshi.fills.count is 'Contracts filled (exact, 2 decimals).';
comment on column kalshi.fills.fee_cost is 'Exchange fee for this fill in dollars (6 decimals).';
comment on column kalshi.fills.post_position is 'Our net position after the fill (+ YES, - NO).';
comment on column kalshi.fills.side is 'Deprecated legacy side, kept as received.';
comment on column kalshi.fills.action is 'Deprecated legacy action, kept as received.';
comment on column kalshi.fills.purchased_side is 'Deprecated (same as outcome_side), kept as received.';
comment on column kalshi.fills.subaccount is 'Sub-account of the fill.';
comment on column kalshi.fills.exchange_ts is 'Fill time at the exchange.';
comment on column kalshi.fills.received_at is 'When we received the fill.';
comment on column kalshi.fills.session_id is 'Recording session.';
comment on column kalshi.fills.generation is 'Connection number within the session.';
comment on column kalshi.fills.sid is 'Subscription id.';

create table kalshi.user_orders (
    order_id                    text not null,
    content_hash                uuid not null,
    user_id                     text,
    market_ticker               text not null,
    exchange_index              integer,
    status                      text not null,
    outcome_side                text,
    book_side                   text,
    side                        text,
    is_yes                      boolean,
    yes_price                   numeric not null,
    fill_count                  numeric not null,
    remaining_count             numeric not null,
    initial_count               numeric not null,
    taker_fill_cost             numeric,
    maker_fill_cost             numeric,
    taker_fees                  numeric,
    maker_fees                  numeric,
    client_order_id             text,
    order_group_id              text,
    self_trade_prevention_type  text,
    created_ts                  timestamptz,
    last_updated_ts             timestamptz,
    expiration_ts               timestamptz,
    last_update_reason          text,
    subaccount_number           integer,
    received_at                 timestamptz not null,
    session_id                  uuid,
    generation                  integer,
    sid                         integer,
    primary key (order_id, content_hash)
);
create index user_orders_market_time on kalshi.user_orders (market_ticker, last_updated_ts);
comment on table kalshi.user_orders is
    'Updates of our own orders (channel user_orders): one row per distinct state of an order (create, fill, cancel, amend, expiry).';
comment on column kalshi.user_orders.order_id is 'Order id.';
comment on column kalshi.user_orders.content_hash is 'md5 of the update''s values (part of the key).';
comment on column kalshi.user_orders.user_id is 'Our user id.';
comment on column kalshi.user_orders.market_ticker is 'Market ticker (wire field ticker).';
comment on column kalshi.user_orders.exchange_index is 'Exchange shard.';
comment on column kalshi.user_orders.status is 'resting, canceled, executed or unknown.';
comment on column kalshi.user_orders.outcome_side is 'Outcome the order buys (yes/no).';
comment on column kalshi.user_orders.book_side is 'Same bit as outcome_side (bid = yes, ask = no).';
comment on column kalshi.user_orders.side is 'Deprecated legacy side.';
comment on column kalshi.user_orders.is_yes is 'Deprecated legacy flag.';
comment on column kalshi.user_orders.yes_price is 'Limit price as a YES price in dollars.';
comment on column kalshi.user_orders.fill_count is 'Contracts filled so far.';
comment on column kalshi.user_orders.remaining_count is 'Contracts still resting.';
comment on column kalshi.user_orders.initial_count is 'Original order size.';
comment on column kalshi.user_orders.taker_fill_cost is 'Taker fill cost in dollars (6 decimals).';
comment on column kalshi.user_orders.maker_fill_cost is 'Maker fill cost in dollars (6 decimals).';
comment on column kalshi.user_orders.taker_fees is 'Taker fees in dollars (6 decimals).';
comment on column kalshi.user_orders.maker_fees is 'Maker fees in dollars (6 decimals).';
comment on column kalshi.user_orders.client_order_id is 'Our client order id.';
comment on column kalshi.user_orders.order_group_id is 'Order group of the order.';
comment on column kalshi.user_orders.self_trade_prevention_type is 'taker_at_cross or maker.';
comment on column kalshi.user_orders.created_ts is 'When the order was created.';
comment on column kalshi.user_orders.last_updated_ts is 'When the order last changed.';
comment on column kalshi.user_orders.expiration_ts is 'When the order expires.';
comment on column kalshi.user_orders.last_update_reason is 'Why the order last changed (Trade, Amend, Decrease, ...Cancel).';
comment on column kalshi.user_orders.subaccount_number is 'Sub-account (0 = primary).';
comment on column kalshi.user_orders.received_at is 'When we received the update.';
comment on column kalshi.user_orders.session_id is 'Recording session that first stored the update.';
comment on column kalshi.user_orders.generation is 'Connection number within that session.';
comment on column kalshi.user_orders.sid is 'Subscription id.';

create table kalshi.market_positions (
    market_ticker       text not null,
    content_hash        uuid not null,
    user_id             text,
    position            numeric not null,
    position_cost       numeric,
    realized_pnl        numeric,
    fees_paid           numeric,
    position_fee_cost   numeric,
    volume              numeric,
    subaccount          integer,
    received_at         timestamptz not null,
    session_id          uuid,
    generation          integer,
    sid                 integer,
    primary key (market_ticker, content_hash)
);
comment on table kalshi.market_positions is
    'Our position updates (channel market_positions), one row per distinct position state (the exchange sends no time; '
    'order by received_at).';
comment on column kalshi.market_positions.market_ticker is 'Market ticker.';
comment on column kalshi.market_positions.content_hash is 'md5 of the update''s values (part of the key).';
comment on column kalshi.market_positions.user_id is 'Our user id.';
comment on column kalshi.market_positions.position is 'Net position in contracts (+ YES, - NO).';
comment on column kalshi.market_positions.position_cost is 'Current cost basis in dollars.';
comment on column kalshi.market_positions.realized_pnl is 'Realized P&L in dollars.';
comment on column kalshi.market_positions.fees_paid is 'Total fees paid in dollars.';
comment on column kalshi.market_positions.position_fee_cost is 'Total position fee cost in dollars.';
comment on column kalshi.market_positions.volume is 'Total contracts traded in this market.';
comment on column kalshi.market_positions.subaccount is 'Sub-account.';
comment on column kalshi.market_positions.received_at is 'When we received the update.';
comment on column kalshi.market_positions.session_id is 'Recording session that first stored the update.';
comment on column kalshi.market_positions.generation is 'Connection number within that session.';
comment on column kalshi.market_positions.sid is 'Subscription id.';

create table kalshi.market_lifecycle (
    session_id              uuid not null,
    generation              integer not null,
    sid                     integer not null,
    seq                     bigint,
    content_hash            uuid not null,
    message_type            text not null,
    market_ticker           text not null,
    event_type              text not null,
    exchange_index          integer,
    open_ts                 timestamptz,
    close_ts                timestamptz,
    determination_ts        timestamptz,
    result                  text,
    settlement_value        numeric,
    settled_ts              timestamptz,
    is_deactivated          boolean,
    additional_metadata     jsonb,
    price_level_structure   text,
    price_ranges            jsonb,
    strike_type             text,
    floor_strike            numeric,
    cap_strike              numeric,
    custom_strike           jsonb,
    yes_sub_title           text,
    received_at             timestamptz not null,
    constraint market_lifecycle_key unique nulls not distinct (session_id, generation, sid, seq, content_hash)
);
create index market_lifecycle_market on kalshi.market_lifecycle (market_ticker, received_at);
comment on table kalshi.market_lifecycle is
    'Market state changes (channels market_lifecycle_v2 and multivariate_market_lifecycle): created, activated, '
    'deactivated, close_date_updated, determined, settled, price_level_structure_updated, metadata_updated.';
comment on column kalshi.market_lifecycle.session_id is 'Recording session.';
comment on column kalshi.market_lifecycle.generation is 'Connection number within the session.';
comment on column kalshi.market_lifecycle.sid is 'Subscription id.';
comment on column kalshi.market_lifecycle.seq is 'Sequence number within the subscription.';
comment on column kalshi.market_lifecycle.content_hash is 'md5 of the message values (part of the key).';
comment on column kalshi.market_lifecycle.message_type is 'market_lifecycle_v2 or multivariate_market_lifecycle (combo markets).';
comment on column kalshi.market_lifecycle.market_ticker is 'Market ticker.';
comment on column kalshi.market_lifecycle.event_type is 'What changed (created, activated, deactivated, close_date_updated, determined, settled, ...).';
comment on column kalshi.market_lifecycle.exchange_index is 'Exchange shard of the market (on created).';
comment on column kalshi.market_lifecycle.open_ts is 'Market open time (on created).';
comment on column kalshi.market_lifecycle.close_ts is 'Market close time (on created and close_date_updated).';
comment on column kalshi.market_lifecycle.determination_ts is 'Determination time (on determined).';
comment on column kalshi.market_lifecycle.result is 'Result (on determined): yes, no, scalar ...';
comment on column kalshi.market_lifecycle.settlement_value is 'Settlement value in dollars (on determined).';
comment on column kalshi.market_lifecycle.settled_ts is 'Settlement time (on settled).';
comment on column kalshi.market_lifecycle.is_deactivated is 'True when trading was paused, false when resumed.';
comment on column kalshi.market_lifecycle.additional_metadata is 'Market metadata sent on created (name, title, rules, event_ticker ...).';
comment on column kalshi.market_lifecycle.price_level_structure is 'Price level structure label (use price_ranges for valid prices).';
comment on column kalshi.market_lifecycle.price_ranges is 'Valid price ranges [{start, end, step}] in dollars (exact strings).';
comment on column kalshi.market_lifecycle.strike_type is 'Strike type (metadata_updated).';
comment on column kalshi.market_lifecycle.floor_strike is 'Floor strike (metadata_updated).';
comment on column kalshi.market_lifecycle.cap_strike is 'Cap strike (metadata_updated).';
comment on column kalshi.market_lifecycle.custom_strike is 'Custom strike object (metadata_updated).';
comment on column kalshi.market_lifecycle.yes_sub_title is 'New YES subtitle (metadata_updated).';
comment on column kalshi.market_lifecycle.received_at is 'When we received the message.';

create table kalshi.event_lifecycle (
    session_id              uuid not null,
    generation              integer not null,
    sid                     integer not null,
    seq                     bigint,
    content_hash            uuid not null,
    event_ticker            text not null,
    exchange_index          integer,
    title                   text,
    subtitle                text,
    collateral_return_type  text,
    series_ticker           text,
    strike_date             timestamptz,
    strike_period           text,
    received_at             timestamptz not null,
    constraint event_lifecycle_key unique nulls not distinct (session_id, generation, sid, seq, content_hash)
);
create index event_lifecycle_event on kalshi.event_lifecycle (event_ticker);
comment on table kalshi.event_lifecycle is 'Events created (message event_lifecycle on the lifecycle channels).';
comment on column kalshi.event_lifecycle.session_id is 'Recording session.';
comment on column kalshi.event_lifecycle.generation is 'Connection number within the session.';
comment on column kalshi.event_lifecycle.sid is 'Subscription id.';
comment on column kalshi.event_lifecycle.seq is 'Sequence number within the subscription.';
comment on column kalshi.event_lifecycle.content_hash is 'md5 of the message values (part of the key).';
comment on column kalshi.event_lifecycle.event_ticker is 'Event ticker.';
comment on column kalshi.event_lifecycle.exchange_index is 'Exchange shard of the event''s markets.';
comment on column kalshi.event_lifecycle.title is 'Event title.';
comment on column kalshi.event_lifecycle.subtitle is 'Event subtitle (wire subtitle or sub_title).';
comment on column kalshi.event_lifecycle.collateral_return_type is 'MECNET, DIRECNET or empty.';
comment on column kalshi.event_lifecycle.series_ticker is 'Series ticker.';
comment on column kalshi.event_lifecycle.strike_date is 'Strike date.';
comment on column kalshi.event_lifecycle.strike_period is 'Strike period.';
comment on column kalshi.event_lifecycle.received_at is 'When we received the message.';

create table kalshi.event_fee_updates (
    session_id              uuid not null,
    generation              integer not null,
    sid                     integer not null,
    seq                     bigint,
    content_hash            uuid not null,
    event_ticker            text not null,
    fee_type_override       text,
    fee_multiplier_override numeric,
    received_at             timestamptz not null,
    constraint event_fee_updates_key unique nulls not distinct (session_id, generation, sid, seq, content_hash)
);
comment on table kalshi.event_fee_updates is 'Fee overrides set or cleared on an event (message event_fee_update).';
comment on column kalshi.event_fee_updates.session_id is 'Recording session.';
comment on column kalshi.event_fee_updates.generation is 'Connection number within the session.';
comment on column kalshi.event_fee_updates.sid is 'Subscription id.';
comment on column kalshi.event_fee_updates.seq is 'Sequence number within the subscription.';
comment on column kalshi.event_fee_updates.content_hash is 'md5 of the message values (part of the key).';
comment on column kalshi.event_fee_updates.event_ticker is 'Event ticker.';
comment on column kalshi.event_fee_updates.fee_type_override is 'Fee type override (null when cleared).';
comment on column kalshi.event_fee_updates.fee_multiplier_override is 'Fee multiplier override (null when cleared).';
comment on column kalshi.event_fee_updates.received_at is 'When we received the message.';

create table kalshi.order_group_updates (
    session_id          uuid not null,
    generation          integer not null,
    sid                 integer not null,
    seq                 bigint,
    content_hash        uuid not null,
    event_type          text not null,
    order_group_id      text not null,
    contracts_limit     numeric,
    exchange_ts         timestamptz,
    received_at         timestamptz not null,
    constraint order_group_updates_key unique nulls not distinct (session_id, generation, sid, seq, content_hash)
);
comment on table kalshi.order_group_updates is 'Changes of our order groups (channel order_group_updates).';
comment on column kalshi.order_group_updates.session_id is 'Recording session.';
comment on column kalshi.order_group_updates.generation is 'Connection number within the session.';
comment on column kalshi.order_group_updates.sid is 'Subscription id.';
comment on column kalshi.order_group_updates.seq is 'Sequence number within the subscription.';
comment on column kalshi.order_group_updates.content_hash is 'md5 of the message values (part of the key).';
comment on column kalshi.order_group_updates.event_type is 'created, triggered, reset, deleted or limit_updated.';
comment on column kalshi.order_group_updates.order_group_id is 'Order group id.';
comment on column kalshi.order_group_updates.contracts_limit is 'Contracts limit (on created and limit_updated).';
comment on column kalshi.order_group_updates.exchange_ts is 'Matching-engine time.';
comment on column kalshi.order_group_updates.received_at is 'When we received the message.';

create table kalshi.communications (
    session_id              uuid not null,
    generation              integer not null,
    sid                     integer not null,
    seq                     bigint,
    content_hash            uuid not null,
    message_type            text not null
        check (message_type in ('rfq_created', 'rfq_deleted', 'quote_created', 'quote_accepted', 'quote_executed')),
    rfq_id                  text not null,
    rfq_creator_id          text,
    quote_id                text,
    quote_creator_id        text,
    market_ticker           text not null,
    event_ticker            text,
    contracts               numeric,
    target_cost             numeric,
    yes_bid                 numeric,
    no_bid                  numeric,
    yes_contracts_offered   numeric,
    no_contracts_offered    numeric,
    rfq_target_cost         numeric,
    accepted_side           text,
    contracts_accepted      numeric,
    order_id                text,
    client_order_id         text,
    created_ts              timestamptz,
    deleted_ts              timestamptz,
    executed_ts             timestamptz,
    mve_collection_ticker   text,
    mve_selected_legs       jsonb,
    subaccount              integer,
    received_at             timestamptz not null,
    constraint communications_key unique nulls not distinct (session_id, generation, sid, seq, content_hash)
);
create index communications_rfq on kalshi.communications (rfq_id);
comment on table kalshi.communications is
    'RFQ and quote messages (channel communications): one row per message; message_type says which; columns a '
    'message type does not carry are null.';
comment on column kalshi.communications.session_id is 'Recording session.';
comment on column kalshi.communications.generation is 'Connection number within the session.';
comment on column kalshi.communications.sid is 'Subscription id.';
comment on column kalshi.communications.seq is 'Sequence number within the subscription.';
comment on column kalshi.communications.content_hash is 'md5 of the message values (part of the key).';
comment on column kalshi.communications.message_type is 'rfq_created, rfq_deleted, quote_created, quote_accepted or quote_executed.';
comment on column kalshi.communications.rfq_id is 'RFQ id (wire id on rfq_* messages, rfq_id on quote_* messages).';
comment on column kalshi.communications.rfq_creator_id is 'Anonymised id of the RFQ creator (wire creator_id on rfq_* messages).';
comment on column kalshi.communications.quote_id is 'Quote id (quote_* messages).';
comment on column kalshi.communications.quote_creator_id is 'Anonymised id of the quote creator.';
comment on column kalshi.communications.market_ticker is 'Market ticker.';
comment on column kalshi.communications.event_ticker is 'Event ticker.';
comment on column kalshi.communications.contracts is 'Requested contracts (rfq_*).';
comment on column kalshi.communications.target_cost is 'Requested notional in dollars (rfq_*).';
comment on column kalshi.communications.yes_bid is 'Quoted YES bid in dollars.';
comment on column kalshi.communications.no_bid is 'Quoted NO bid in dollars.';
comment on column kalshi.communications.yes_contracts_offered is 'Contracts offered on the YES side.';
comment on column kalshi.communications.no_contracts_offered is 'Contracts offered on the NO side.';
comment on column kalshi.communications.rfq_target_cost is 'The RFQ''s target cost in dollars (quote_*).';
comment on column kalshi.communications.accepted_side is 'Side accepted (quote_accepted).';
comment on column kalshi.communications.contracts_accepted is 'Contracts accepted (quote_accepted).';
comment on column kalshi.communications.order_id is 'Our order id (quote_executed; join to fills).';
comment on column kalshi.communications.client_order_id is 'Our client order id (quote_executed).';
comment on column kalshi.communications.created_ts is 'Creation time (rfq_created, quote_created).';
comment on column kalshi.communications.deleted_ts is 'Deletion time (rfq_deleted).';
comment on column kalshi.communications.executed_ts is 'Execution time (quote_executed).';
comment on column kalshi.communications.mve_collection_ticker is 'Combo collection ticker (combo RFQs).';
comment on column kalshi.communications.mve_selected_legs is 'Combo legs [{event_ticker, market_ticker, side, yes_settlement_value_dollars}].';
comment on column kalshi.communications.subaccount is 'Our sub-account.';
comment on column kalshi.communications.received_at is 'When we received the message.';

create table kalshi.reference_values (
    session_id      uuid not null,
    generation      integer not null,
    sid             integer not null,
    seq             bigint,
    content_hash    uuid not null,
    message_type    text not null,
    index_id        text,
    underlying_ticker text,
    value_usd       numeric,
    source_ts       timestamptz,
    payload         jsonb not null,
    received_at     timestamptz not null,
    constraint reference_values_key unique nulls not distinct (session_id, generation, sid, seq, content_hash)
);
comment on table kalshi.reference_values is
    'Reference index values (cfbenchmarks_value, cfbenchmarks_value_5hz, pyth_value and their list replies); '
    'entitled sessions only.';
comment on column kalshi.reference_values.session_id is 'Recording session.';
comment on column kalshi.reference_values.generation is 'Connection number within the session.';
comment on column kalshi.reference_values.sid is 'Subscription id.';
comment on column kalshi.reference_values.seq is 'Sequence number within the subscription.';
comment on column kalshi.reference_values.content_hash is 'md5 of the message values (part of the key).';
comment on column kalshi.reference_values.message_type is 'Wire message type.';
comment on column kalshi.reference_values.index_id is 'Index id (e.g. BRTI).';
comment on column kalshi.reference_values.underlying_ticker is 'Underlying ticker (pyth_value).';
comment on column kalshi.reference_values.value_usd is 'Index value in dollars (value_usd, or the 60 s average for cfbenchmarks_value).';
comment on column kalshi.reference_values.source_ts is 'Upstream time of the value.';
comment on column kalshi.reference_values.payload is 'The whole message payload (decimals as exact strings).';
comment on column kalshi.reference_values.received_at is 'When we received the message.';
