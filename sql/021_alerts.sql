-- 021: alerts raised by the rules of a market set after each session (kalshi_ingest/alerts.py).
--
-- An alert is one episode of a condition (rule + market): it opens when the condition becomes true, is
-- notified once, stays open (last_seen_at moves) while the condition holds in later sessions, and is
-- resolved the first time the condition no longer holds. So the same condition is never sent twice in a row.

create table kalshi.alerts (
    alert_id        uuid primary key,
    market_set      text not null,
    condition_key   text not null,
    rule            text not null,
    kind            text not null,
    market_ticker   text,
    session_id      uuid not null,
    value           numeric,
    threshold       numeric,
    message         text not null,
    fired_at        timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    last_session_id uuid not null,
    resolved_at     timestamptz,
    notified        boolean not null default false,
    notify_error    text
);
create unique index alerts_one_open_per_condition on kalshi.alerts (market_set, condition_key) where resolved_at is null;
create index alerts_fired_at on kalshi.alerts (fired_at);
comment on table kalshi.alerts is
    'Alert episodes: a rule of a market set held for a market (or the session); opened once, resolved when it no longer holds.';
comment on column kalshi.alerts.alert_id is 'Alert id.';
comment on column kalshi.alerts.market_set is 'Market set whose rule fired.';
comment on column kalshi.alerts.condition_key is 'rule name + market: the identity used to avoid repeating an alert.';
comment on column kalshi.alerts.rule is 'Rule name (generated from its kind and parameters unless named in the config).';
comment on column kalshi.alerts.kind is 'price_move, spread_above, spread_below, depth_below, market_stale or session_unhealthy.';
comment on column kalshi.alerts.market_ticker is 'Market the condition is about (null for session_unhealthy).';
comment on column kalshi.alerts.session_id is 'Session in which the alert first fired.';
comment on column kalshi.alerts.value is 'Observed value (price move, spread, depth, seconds stale, problem count).';
comment on column kalshi.alerts.threshold is 'The rule''s threshold.';
comment on column kalshi.alerts.message is 'Human-readable alert text (as notified).';
comment on column kalshi.alerts.fired_at is 'When the alert opened.';
comment on column kalshi.alerts.last_seen_at is 'Last evaluation at which the condition still held.';
comment on column kalshi.alerts.last_session_id is 'Last session at which the condition still held.';
comment on column kalshi.alerts.resolved_at is 'First evaluation at which the condition no longer held (null while open).';
comment on column kalshi.alerts.notified is 'True when the notification block accepted the alert.';
comment on column kalshi.alerts.notify_error is 'Why the notification failed (no block configured, block missing, HTTP error).';
