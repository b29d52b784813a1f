"""Native active-inference agents: a whole population of pymdp-style agents stepped by one call
(Rust with rayon and the GIL released, or numpy vectorized over agents), a grid world for them,
and a per-agent adapter for the agent managers."""

from ._model import GenerativeModel, grid_world_model, policies_of, reward_grid_model
from ._population import AgentPopulation, PopulationAgent
from ._tmaze import TMaze, tmaze_model
from ._world import GridWorld

__all__ = [
    "AgentPopulation",
    "GenerativeModel",
    "GridWorld",
    "PopulationAgent",
    "TMaze",
    "grid_world_model",
    "policies_of",
    "reward_grid_model",
    "tmaze_model",
]
