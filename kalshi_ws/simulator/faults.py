"""Fault kinds the simulator can inject, and the record of each injection.

Sequenced-stream faults are *armed* on a connection and fire on the next matching sequenced frame
(optionally filtered by ``channel`` / ``sid``); the rest act immediately. Every fault that actually hits the
wire is appended to ``Simulator.faults_injected`` as a dict::

    {"kind": "drop", "time_ms": 1795185002118, "conn": 3, "sid": 1, "seq": 57, "channel": "orderbook_delta"}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Armed faults: fire on the next sequenced data frame that matches.
ARMED = frozenset({
    "drop",               # skip a frame; its seq is consumed (a gap)
    "duplicate",          # send a frame twice (same seq)
    "reorder",            # swap a frame with the next one on the same sid
    "numbers",            # send a frame with decimals as JSON numbers instead of strings
    "close_mid_snapshot",  # close the socket right after the next orderbook_snapshot (mid-batch)
})
#: Immediate faults.
IMMEDIATE = frozenset({
    "stall",              # stop sending data for `duration` s (pings continue)
    "stall_all",          # stop sending data and pings for `duration` s
    "close",              # abort the TCP connection now (mode="abort") or close with 1011 (mode="close")
    "malformed",          # a frame that is not valid JSON
    "unknown_type",       # a well-formed frame of an unknown type
    "legacy",             # a legacy-shaped frame (mode="ticker": integer-cent ticker; "ticker_v2")
    "oversized",          # a frame of `size` bytes (default 2 MiB: above websockets' 1 MiB default)
    "sub_error",          # asynchronous subscription error (code 10 or 25) with sid; subscription dropped
    "extra_key",          # a ticker frame carrying an undocumented key ("Clock")
    "zero_delta",         # an orderbook_delta with delta_fp "0.00" (takes the next seq; book unchanged)
    "poison",             # a well-formed ticker frame whose market_id holds a NUL (PostgreSQL text cannot store it)
})
#: Handshake faults: apply to the next `count` connection attempts.
HANDSHAKE = frozenset({"auth_reject"})  # mode="401" (default) or "403"
KINDS = ARMED | IMMEDIATE | HANDSHAKE


@dataclass
class ArmedFault:
    kind: str
    channel: str | None = None
    sid: int | None = None
    remaining: int = 1
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, channel: str, sid: int, frame_type: str) -> bool:
        if self.kind == "close_mid_snapshot" and frame_type != "orderbook_snapshot":
            return False
        return (self.channel is None or self.channel == channel) and (self.sid is None or self.sid == sid)
