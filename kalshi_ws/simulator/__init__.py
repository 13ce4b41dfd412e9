"""Wire-compatible local Kalshi exchange: WebSocket + REST on one port, seeded market model, faults.

    async with Simulator(markets=4, seed=1, rate=200) as sim:
        env = Environment.at(sim.base_url)
        signer = Signer.from_file(sim.key_id, sim.private_key_path)
"""

from .cli import main
from .faults import KINDS as FAULT_KINDS
from .model import MarketModel
from .server import Simulator

__all__ = ["FAULT_KINDS", "MarketModel", "Simulator", "main"]
