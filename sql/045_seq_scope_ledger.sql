-- The exchange numbers seq differently from the session's seq_scope setting (KALSHI_SEQ_SCOPE): one gap-ledger row
-- per connection on which it was seen (kind 'seq_scope', closed at once; detail: the setting, the sid and channel,
-- the evidence). It does not itself make data untrusted: the gaps the wrong setting then sees are recorded and
-- recovered as gaps.
alter table kalshi.gap_ledger drop constraint gap_ledger_kind_check;
alter table kalshi.gap_ledger add constraint gap_ledger_kind_check check (kind in (
    'gap', 'disconnect', 'connect_failed', 'recovery', 'resubscribe', 'subscription_error', 'stale',
    'auth_rejected', 'book_inconsistency', 'backpressure', 'seq_scope'));
