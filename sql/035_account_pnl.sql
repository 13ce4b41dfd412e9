-- 035: what did my account do: fills with the running position and realised P&L, and positions per market.
--
--   select * from kalshi.positions_by_market order by market_ticker;
--   select exchange_ts, outcome_side, yes_price, count, position_after, realized_pnl_after
--   from kalshi.fills_with_pnl where market_ticker = 'KXFED-26DEC-T4.00' order by fill_number;
--
-- Accounting: average cost, per market and sub-account, in contracts of the side held (a net position is + YES or
-- - NO). A fill on the side already held (or from flat) adds to the cost basis at the price paid for that side
-- (the YES price for YES, 1 - YES price for NO). A fill on the other side closes up to the open quantity: buying
-- NO at q against a YES long sells YES at 1 - q, so each closed contract realises (1 - q) - average cost; the rest
-- opens a position on the new side. Realised P&L is before fees; fees are reported next to it.
-- Fills are taken in exchange-time order (then receive order), so P&L is exact when every fill was recorded;
-- kalshi.positions_by_market compares the result with the position the exchange last reported.

create or replace function kalshi.position_step(state numeric[], outcome_side text, yes_price numeric, count numeric)
returns numeric[]
language plpgsql
immutable
parallel safe
as $$
declare
    held numeric := state[1];
    cost numeric := state[2];
    realized numeric := state[3];
    price numeric;
    signed numeric;
    closing numeric;
    average numeric;
begin
    if outcome_side not in ('yes', 'no') or yes_price is null or count is null or count <= 0 then
        return state;
    end if;
    price := case when outcome_side = 'yes' then yes_price else 1 - yes_price end;
    signed := case when outcome_side = 'yes' then count else -count end;
    if held = 0 or sign(held) = sign(signed) then
        cost := cost + count * price;
    else
        closing := least(count, abs(held));
        average := cost / abs(held);
        realized := realized + closing * (1 - price - average);
        cost := case when closing = abs(held) then 0 else cost - closing * average end;
        cost := cost + (count - closing) * price;
    end if;
    return array[held + signed, cost, realized];
end;
$$;
comment on function kalshi.position_step(numeric[], text, numeric, numeric) is
    'Transition of kalshi.position_pnl: {position, cost basis, realised P&L} after one fill (outcome side, YES '
    'price, contracts), average-cost accounting.';

create or replace aggregate kalshi.position_pnl(text, numeric, numeric) (
    sfunc = kalshi.position_step,
    stype = numeric[],
    initcond = '{0,0,0}'
);
comment on aggregate kalshi.position_pnl(text, numeric, numeric) is
    'position_pnl(outcome_side, yes_price, count order by time) = {net position (+ YES / - NO), cost basis of the open '
    'position in dollars, realised P&L in dollars before fees}. Use as a window function for running values.';

create or replace view kalshi.fills_with_pnl as
with ordered as (
    select f.*,
           coalesce(f.outcome_side, f.purchased_side, f.side) as held_side,
           coalesce(f.subaccount, 0) as account
    from kalshi.fills f
),
running as (
    select o.*,
           row_number() over w as fill_number,
           kalshi.position_pnl(o.held_side, o.yes_price, o.count) over w as state,
           sum(coalesce(o.fee_cost, 0)) over w as fees_after
    from ordered o
    window w as (partition by o.market_ticker, o.account
                 order by o.exchange_ts, o.received_at, o.trade_id, o.order_id
                 rows between unbounded preceding and current row)
)
select r.market_ticker,
       r.account as subaccount,
       r.fill_number,
       r.exchange_ts,
       r.trade_id,
       r.order_id,
       r.client_order_id,
       r.is_taker,
       r.held_side as outcome_side,
       r.yes_price,
       case when r.held_side = 'no' then 1 - r.yes_price else r.yes_price end as price_paid,
       r.count,
       r.fee_cost,
       r.state[1] as position_after,
       r.state[2] as cost_basis_after,
       r.state[3] as realized_pnl_after,
       r.state[3] - coalesce(lag(r.state[3]) over (partition by r.market_ticker, r.account order by r.fill_number), 0)
           as realized_pnl,
       r.fees_after,
       r.post_position as reported_position_after,
       r.received_at,
       r.session_id
from running r;
comment on view kalshi.fills_with_pnl is
    'Our fills in time order per market and sub-account, each with the running net position, cost basis and realised '
    'P&L after it (average cost, before fees) and the P&L this fill realised.';
comment on column kalshi.fills_with_pnl.market_ticker is 'Market ticker.';
comment on column kalshi.fills_with_pnl.subaccount is 'Sub-account (0 = primary).';
comment on column kalshi.fills_with_pnl.fill_number is 'Position of the fill in the market''s fill history (1 = first).';
comment on column kalshi.fills_with_pnl.exchange_ts is 'Fill time at the exchange.';
comment on column kalshi.fills_with_pnl.trade_id is 'Trade id.';
comment on column kalshi.fills_with_pnl.order_id is 'Our order id.';
comment on column kalshi.fills_with_pnl.client_order_id is 'Our client order id.';
comment on column kalshi.fills_with_pnl.is_taker is 'True when we were the taker.';
comment on column kalshi.fills_with_pnl.outcome_side is 'Outcome the fill bought: yes or no.';
comment on column kalshi.fills_with_pnl.yes_price is 'Fill price as a YES price (dollars).';
comment on column kalshi.fills_with_pnl.price_paid is 'Price paid per contract of the side bought (yes_price, or 1 - yes_price for NO).';
comment on column kalshi.fills_with_pnl.count is 'Contracts filled.';
comment on column kalshi.fills_with_pnl.fee_cost is 'Exchange fee of the fill (dollars).';
comment on column kalshi.fills_with_pnl.position_after is 'Net position after the fill (+ YES, - NO).';
comment on column kalshi.fills_with_pnl.cost_basis_after is 'Cost of the open position after the fill (dollars).';
comment on column kalshi.fills_with_pnl.realized_pnl_after is 'Realised P&L of the market so far, before fees (dollars).';
comment on column kalshi.fills_with_pnl.realized_pnl is 'P&L realised by this fill (closing part of an opposite position).';
comment on column kalshi.fills_with_pnl.fees_after is 'Fees paid in the market so far (dollars).';
comment on column kalshi.fills_with_pnl.reported_position_after is 'Net position after the fill as reported by the exchange (post_position).';
comment on column kalshi.fills_with_pnl.received_at is 'When we received the fill.';
comment on column kalshi.fills_with_pnl.session_id is 'Recording session.';

create or replace view kalshi.positions_by_market as
with from_fills as (
    select f.market_ticker,
           f.subaccount,
           count(*) as fills,
           min(f.exchange_ts) as first_fill_at,
           max(f.exchange_ts) as last_fill_at,
           sum(f.count) filter (where f.outcome_side = 'yes') as yes_bought,
           sum(f.count) filter (where f.outcome_side = 'no') as no_bought,
           (array_agg(f.position_after order by f.fill_number desc))[1] as position,
           (array_agg(f.cost_basis_after order by f.fill_number desc))[1] as cost_basis,
           (array_agg(f.realized_pnl_after order by f.fill_number desc))[1] as realized_pnl,
           (array_agg(f.reported_position_after order by f.fill_number desc))[1] as last_reported_post_position,
           sum(coalesce(f.fee_cost, 0)) as fees
    from kalshi.fills_with_pnl f
    group by f.market_ticker, f.subaccount
),
reported as (
    select distinct on (p.market_ticker, coalesce(p.subaccount, 0))
           p.market_ticker, coalesce(p.subaccount, 0) as subaccount, p.position, p.position_cost, p.realized_pnl,
           p.fees_paid, p.volume, p.received_at
    from kalshi.market_positions p
    order by p.market_ticker, coalesce(p.subaccount, 0), p.received_at desc
)
select coalesce(f.market_ticker, r.market_ticker) as market_ticker,
       coalesce(f.subaccount, r.subaccount) as subaccount,
       coalesce(f.fills, 0) as fills,
       f.first_fill_at,
       f.last_fill_at,
       coalesce(f.yes_bought, 0) as yes_bought,
       coalesce(f.no_bought, 0) as no_bought,
       coalesce(f.position, 0) as position,
       case when f.position > 0 then 'yes' when f.position < 0 then 'no' end as side_held,
       coalesce(f.cost_basis, 0) as cost_basis,
       f.cost_basis / nullif(abs(f.position), 0) as average_price,
       coalesce(f.realized_pnl, 0) as realized_pnl,
       coalesce(f.fees, 0) as fees,
       coalesce(f.realized_pnl, 0) - coalesce(f.fees, 0) as realized_pnl_after_fees,
       r.position as reported_position,
       r.position_cost as reported_position_cost,
       r.realized_pnl as reported_realized_pnl,
       r.fees_paid as reported_fees_paid,
       r.received_at as reported_at,
       r.position is not distinct from coalesce(f.position, 0) as position_matches_exchange
from from_fills f
full join reported r using (market_ticker, subaccount);
comment on view kalshi.positions_by_market is
    'Our position per market and sub-account, computed from the recorded fills (net position, cost basis, average '
    'price, realised P&L before and after fees), next to the last position the exchange reported (market_positions).';
comment on column kalshi.positions_by_market.market_ticker is 'Market ticker.';
comment on column kalshi.positions_by_market.subaccount is 'Sub-account (0 = primary).';
comment on column kalshi.positions_by_market.fills is 'Fills recorded.';
comment on column kalshi.positions_by_market.first_fill_at is 'First fill (exchange time).';
comment on column kalshi.positions_by_market.last_fill_at is 'Last fill (exchange time).';
comment on column kalshi.positions_by_market.yes_bought is 'Contracts of YES bought.';
comment on column kalshi.positions_by_market.no_bought is 'Contracts of NO bought.';
comment on column kalshi.positions_by_market.position is 'Net position from the fills (+ YES, - NO).';
comment on column kalshi.positions_by_market.side_held is 'yes, no, or null when flat.';
comment on column kalshi.positions_by_market.cost_basis is 'Cost of the open position (dollars).';
comment on column kalshi.positions_by_market.average_price is 'cost_basis / |position|: average price paid for the side held.';
comment on column kalshi.positions_by_market.realized_pnl is 'Realised P&L from the fills, before fees (dollars).';
comment on column kalshi.positions_by_market.fees is 'Fees of the fills (dollars).';
comment on column kalshi.positions_by_market.realized_pnl_after_fees is 'realized_pnl - fees.';
comment on column kalshi.positions_by_market.reported_position is 'Position in the last market_position update received.';
comment on column kalshi.positions_by_market.reported_position_cost is 'Cost basis in the last market_position update.';
comment on column kalshi.positions_by_market.reported_realized_pnl is 'Realised P&L in the last market_position update.';
comment on column kalshi.positions_by_market.reported_fees_paid is 'Fees paid in the last market_position update.';
comment on column kalshi.positions_by_market.reported_at is 'When that update was received.';
comment on column kalshi.positions_by_market.position_matches_exchange is
    'True when the position from the fills equals the last reported one (false: fills missing, or updates after them).';

grant select on kalshi.fills_with_pnl, kalshi.positions_by_market to kalshi_reader;
grant execute on function kalshi.position_step(numeric[], text, numeric, numeric),
    kalshi.position_pnl(text, numeric, numeric) to kalshi_reader;
