"""Goal-oriented port-Hamiltonian training as optax gradient transformations.

Implements "Who breaks early, loses: goal oriented training of deep neural
networks based on port Hamiltonian dynamics" (Burghoff, Heinrich Monells,
Gottschalk): momentum read as a damped Hamiltonian system that explores with
low friction and brakes hard once the loss has fallen by a chosen fraction.
"""

from phs_optax._dynamics import DRAGS, INTEGRATORS
from phs_optax._goal_phs import GoalPHSState, goal_phs
from phs_optax._options import KICK_DIRECTIONS, ON_DEADLINE, OPTIONS, Option
from phs_optax._phs import PHSState, phs
from phs_optax._state_utils import brake, find_phs_state, hamiltonian, kinetic_energy

__version__ = "0.1.0"

__all__ = [
    "DRAGS",
    "INTEGRATORS",
    "KICK_DIRECTIONS",
    "ON_DEADLINE",
    "OPTIONS",
    "Option",
    "GoalPHSState",
    "PHSState",
    "brake",
    "find_phs_state",
    "goal_phs",
    "hamiltonian",
    "kinetic_energy",
    "phs",
]
