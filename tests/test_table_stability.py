"""Every row of the paper's tables is stable under the default integrator.

The damping factor d multiplies the momentum each step; |d| > 1 or d < 0 make
the momentum blow up or flip sign every step. It is measured through the
public API: one step with gradient -1 sets p = alpha, one with gradient 0
gives p = d * alpha.
"""

import jax.numpy as jnp
import pytest

import phs_optax
from phs_optax_training import presets

PHS_ROWS = [p for p in presets.PRESETS.values() if p.optimizer != "sgd"]


def braked_damping_factor(preset, integrator, drag):
    brake_factor = preset.brake_factor or 1.0
    tx = phs_optax.goal_phs(
        preset.learning_rate,
        preset.mass,
        preset.friction,
        goal=0.5,
        brake_factor=brake_factor,
        integrator=integrator,
        drag=drag,
        initial_loss=1.0,
    )
    state = tx.init(jnp.zeros(1))
    _, state = tx.update(-jnp.ones(1), state, value=0.0)  # braked from step 0
    first = state.momentum[0]
    _, state = tx.update(jnp.zeros(1), state, value=0.0)
    return float(state.momentum[0] / first)


@pytest.mark.parametrize("drag", phs_optax.DRAGS)
@pytest.mark.parametrize("preset", PHS_ROWS, ids=lambda p: p.name)
def test_default_integrator_damping_stays_in_zero_one(preset, drag):
    # exp(-alpha c) may underflow to 0 (e.g. exp(-100)): full damping, still stable.
    assert 0.0 <= braked_damping_factor(preset, "conformal", drag) <= 1.0


@pytest.mark.parametrize(
    "name, factor",
    [
        ("table1-lr0.0001-goal-f10-m0.001", 1 - 5 * 10 * 1e-4 / 1e-3),
        ("table2-lr0.0001-goal-f10-m0.001", 1 - 100 * 10 * 1e-4 / 1e-3),
        ("table2-lr0.001-goal-f10-m0.01", 1 - 5 * 10 * 1e-3 / 1e-2),
    ],
)
def test_eq2_literal_damping_leaves_unit_interval_on_some_rows(name, factor):
    measured = braked_damping_factor(presets.get_preset(name), "euler", "velocity")
    assert measured == pytest.approx(factor, rel=1e-4)
    assert measured < -1.0
