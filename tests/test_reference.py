"""Side-by-side tests against an independent NumPy (float64) reference.

The reference below is written from the specification (the paper's eq. 2, the
three integrators, the two drags and the goal-oriented braking rule), not from
the library code. Each test steps :func:`phs_optax.goal_phs` or
:func:`phs_optax.phs` and the reference with the same gradients and losses and
compares every step. The library computes in float32, the reference in
float64; the hyperparameters are rounded to float32 first so that both start
from the same numbers, and loss sequences keep a clear distance from the goal
threshold so that a float32 rounding can never flip a braking decision.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import phs_optax

INTEGRATORS = ("euler", "symplectic", "conformal")
DRAGS = ("momentum", "velocity")

# Float32 against float64 over <= 100 steps of a contracting linear recurrence:
# the relative error stays at a few 1e-7 per step, measured against the scale
# of the whole tree (elements near zero are compared with that absolute scale).
RTOL = 3e-5
# Every goal comparison of a test keeps at least this relative distance from the
# threshold, far above float32 rounding of the (smoothed) loss.
MIN_MARGIN = 1e-3


def f32(x: float) -> float:
    """``x`` rounded to float32, as a Python float (exact in float64)."""
    return float(np.float32(x))


# ---------------------------------------------------------------------------
# The reference.
# ---------------------------------------------------------------------------


class Reference:
    """Eq. 2 with goal-oriented braking, in float64 NumPy, one step at a time.

    ``goal=None`` gives the fixed-friction method (no braking, no loss).
    ``learning_rate`` is a float or a Python function of the step index k.
    """

    def __init__(
        self,
        learning_rate,
        mass,
        friction,
        goal=None,
        brake_factor=1.0,
        *,
        integrator,
        drag,
        initial_loss=None,
        ema_decay=None,
        accumulation_size=None,
    ):
        assert integrator in INTEGRATORS and drag in DRAGS
        self.learning_rate = learning_rate
        self.mass = float(mass)
        self.gamma = float(friction)
        self.goal = None if goal is None else float(goal)
        self.brake_factor = float(brake_factor)
        self.integrator = integrator
        self.drag = drag
        self.ema_decay = ema_decay
        self.accumulation_size = accumulation_size

        self.count = 0
        self.momentum = None  # list of float64 leaves, zero at the start
        self.initial_loss = math.nan if initial_loss is None else float(initial_loss)
        self.monitored_loss = math.nan
        self.window = []
        self.braked = False
        self.brake_step = -1
        self.friction = self.gamma
        self.margins = []  # relative distance to the threshold at each comparison

    def alpha(self, k):
        lr = self.learning_rate
        return float(lr(k)) if callable(lr) else float(lr)

    def _observe(self, value):
        """Feeds the loss of this update to the braking rule."""
        if value is None or not math.isfinite(value):
            return  # never the initial loss, never smoothed, never brakes
        if math.isnan(self.initial_loss):
            self.initial_loss = value
        if self.ema_decay is not None:
            if math.isnan(self.monitored_loss):
                self.monitored_loss = value
            else:
                b = float(self.ema_decay)
                self.monitored_loss = b * self.monitored_loss + (1.0 - b) * value
            compare = True
        elif self.accumulation_size is not None:
            self.window.append(value)
            compare = len(self.window) == self.accumulation_size
            if compare:
                self.monitored_loss = sum(self.window) / len(self.window)
                self.window = []
        else:
            self.monitored_loss = value
            compare = True
        if compare and self.goal is not None:
            threshold = (1.0 - self.goal) * self.initial_loss
            self.margins.append(abs(self.monitored_loss - threshold) / threshold)
            if not self.braked and self.monitored_loss <= threshold:
                self.braked = True
                self.brake_step = self.count

    def step(self, grad_leaves, value=None):
        """One update; returns the list of update leaves (float64)."""
        grads = [np.asarray(g, np.float64) for g in grad_leaves]
        if self.momentum is None:
            self.momentum = [np.zeros_like(g) for g in grads]
        self._observe(value)
        self.friction = self.gamma * (self.brake_factor if self.braked else 1.0)

        alpha = self.alpha(self.count)
        rate = self.friction / self.mass if self.drag == "velocity" else self.friction
        if self.integrator == "conformal":
            decay = math.exp(-alpha * rate)
        else:
            decay = 1.0 - alpha * rate
        new_momentum = [
            decay * p - alpha * g for p, g in zip(self.momentum, grads, strict=True)
        ]
        moving = self.momentum if self.integrator == "euler" else new_momentum
        updates = [(alpha / self.mass) * p for p in moving]

        self.momentum = new_momentum
        self.count += 1
        return updates

    @property
    def min_margin(self):
        return min(self.margins, default=math.inf)


# ---------------------------------------------------------------------------
# Inputs.
# ---------------------------------------------------------------------------


def make_params():
    """A small nested pytree of float32 leaves with several shapes."""
    rng = np.random.default_rng(0)
    shapes = {
        "conv": {"kernel": (2, 2, 1, 3), "bias": (3,)},
        "dense": {"kernel": (4, 2), "bias": (2,)},
        "scale": (),
        "blocks": [(3,), (1, 5)],
    }
    return jax.tree.map(
        lambda s: rng.normal(size=s).astype(np.float32),
        shapes,
        is_leaf=lambda s: isinstance(s, tuple),
    )


def random_grads(rng, params, n_steps):
    """``n_steps`` pytrees like ``params`` of standard normal float32 gradients."""
    return [
        jax.tree.map(lambda p: rng.normal(size=np.shape(p)).astype(np.float32), params)
        for _ in range(n_steps)
    ]


def crossing_losses(rng, n_steps, goal, cross_at):
    """Random losses whose first value L0 and first reach of the goal are known.

    Every value before ``cross_at`` (the first is L0) stays at least 5% above
    the threshold ``(1 - goal) * L0``; the value at ``cross_at`` is at least
    5% below it; later values wander both below the threshold and above L0.
    """
    initial = f32(rng.uniform(1.0, 3.0))
    threshold = (1.0 - f32(goal)) * initial
    values = np.empty(n_steps)
    values[0] = initial
    values[1:cross_at] = rng.uniform(1.05 * threshold, 1.3 * initial, cross_at - 1)
    values[cross_at] = rng.uniform(0.5 * threshold, 0.95 * threshold)
    values[cross_at + 1 :] = rng.uniform(
        0.3 * threshold, 1.3 * initial, n_steps - cross_at - 1
    )
    return values.astype(np.float32)


# ---------------------------------------------------------------------------
# Running the library and comparing.
# ---------------------------------------------------------------------------


def run_library(tx, params, grads, values=None, *, jit=True):
    """Steps ``tx`` through ``grads`` (and losses); returns [(updates, state)]."""
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params)
    records = []
    for k, g in enumerate(grads):
        if values is None:
            updates, state = update(g, state, params)
        else:
            updates, state = update(g, state, params, value=np.float32(values[k]))
        records.append(jax.device_get((updates, state)))
    return records


def run_reference(ref, grads, values=None):
    """Steps ``ref``; returns [(update leaves, snapshot of the state)] per step."""
    records = []
    for k, g in enumerate(grads):
        value = None if values is None else float(values[k])
        updates = ref.step(jax.tree.leaves(g), value)
        records.append(
            (
                updates,
                {
                    "momentum": [p.copy() for p in ref.momentum],
                    "friction": ref.friction,
                    "braked": ref.braked,
                    "brake_step": ref.brake_step,
                    "initial_loss": ref.initial_loss,
                    "monitored_loss": ref.monitored_loss,
                    "count": ref.count,
                },
            )
        )
    return records


def assert_leaves_close(got, want, what, rtol=RTOL):
    got = [np.asarray(x, np.float64) for x in got]
    assert len(got) == len(want), what
    scale = max((float(np.max(np.abs(w), initial=0.0)) for w in want), default=0.0)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"{what}, leaf {i}"
        np.testing.assert_allclose(
            g, w, rtol=rtol, atol=rtol * scale, err_msg=f"{what}, leaf {i}"
        )


def compare_runs(lib, ref, params, *, goal=True, monitored=False, rtol=RTOL):
    """Compares every step of a library run with the reference run."""
    structure = jax.tree.structure(params)
    assert len(lib) == len(ref)
    for k, ((updates, state), (ref_updates, ref_state)) in enumerate(
        zip(lib, ref, strict=True)
    ):
        assert jax.tree.structure(updates) == structure, f"step {k}: updates tree"
        assert int(state.count) == ref_state["count"] == k + 1, f"step {k}: count"
        assert_leaves_close(
            jax.tree.leaves(updates), ref_updates, f"step {k}: updates", rtol
        )
        assert_leaves_close(
            jax.tree.leaves(state.momentum),
            ref_state["momentum"],
            f"step {k}: momentum",
            rtol,
        )
        if not goal:
            continue
        assert bool(state.braked) == ref_state["braked"], f"step {k}: braked"
        assert int(state.brake_step) == ref_state["brake_step"], f"step {k}: brake_step"
        np.testing.assert_allclose(
            state.friction, ref_state["friction"], rtol=1e-6, err_msg=f"step {k}"
        )
        np.testing.assert_allclose(
            state.initial_loss, ref_state["initial_loss"], rtol=1e-6, err_msg=f"{k}"
        )
        if monitored:
            np.testing.assert_allclose(
                state.monitored_loss,
                ref_state["monitored_loss"],
                rtol=1e-5,
                err_msg=f"step {k}: monitored_loss",
            )


# Hyperparameters of the fixed tests, exact in float32. Before the brake
# alpha * c is 0.02 (momentum drag) or 0.01 (velocity drag), after it 0.4 or
# 0.2: the explicit damping factor stays well inside (0, 1).
LR, MASS, FRICTION, GOAL, BRAKE_FACTOR = 0.0625, 2.0, 0.25, 0.5, 24.0


def goal_pair(integrator="conformal", drag="momentum", **kwargs):
    """``(goal_phs transform, its reference)`` with the same hyperparameters."""
    hyper = dict(
        learning_rate=LR,
        mass=MASS,
        friction=FRICTION,
        goal=GOAL,
        brake_factor=BRAKE_FACTOR,
    )
    hyper.update(kwargs)
    ref_lr = hyper.pop("reference_learning_rate", hyper["learning_rate"])
    tx = phs_optax.goal_phs(integrator=integrator, drag=drag, **hyper)
    hyper["learning_rate"] = ref_lr
    ref = Reference(integrator=integrator, drag=drag, **hyper)
    return tx, ref


def run_goal_pair(values, *, integrator="conformal", drag="momentum", seed=0, **kw):
    """Runs library and reference on the same losses and random gradients."""
    params = make_params()
    grads = random_grads(np.random.default_rng(seed), params, len(values))
    tx, ref = goal_pair(integrator, drag, **kw)
    lib_records = run_library(tx, params, grads, values)
    ref_records = run_reference(ref, grads, values)
    return params, lib_records, ref_records, ref


def brake_flags(records):
    return [bool(state.braked) for _, state in records]


# ---------------------------------------------------------------------------
# Tests.
# ---------------------------------------------------------------------------


def test_reference_is_eq_2_to_the_letter_for_euler_velocity():
    """Sanity check of the reference itself against eq. 2 written out by hand."""
    alpha, m, gamma = 0.1, 2.0, 0.5
    grads = [np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([-1.0, 3.0])]
    ref = Reference(alpha, m, gamma, integrator="euler", drag="velocity")
    theta_step, p = [], np.zeros(2)
    for g in grads:
        theta_step.append(alpha / m * p)  # theta_{k+1} - theta_k
        p = p - alpha * gamma / m * p - alpha * g
    for g, want in zip(grads, theta_step, strict=True):
        np.testing.assert_allclose(ref.step([g])[0], want, rtol=1e-15)
    np.testing.assert_allclose(ref.momentum[0], p, rtol=1e-15)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("drag", DRAGS)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_updates_and_momentum_match_reference(integrator, drag, jit):
    n_steps, cross_at = 60, 23
    rng = np.random.default_rng(1)
    values = crossing_losses(rng, n_steps, GOAL, cross_at)
    params = make_params()
    grads = random_grads(rng, params, n_steps)
    tx, ref = goal_pair(integrator, drag)

    lib = run_library(tx, params, grads, values, jit=jit)
    want = run_reference(ref, grads, values)

    assert ref.brake_step == cross_at and ref.min_margin > MIN_MARGIN
    compare_runs(lib, want, params, monitored=True)
    assert int(lib[-1][1].brake_step) == cross_at


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "nojit"])
@pytest.mark.parametrize("drag", DRAGS)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_phs_equals_reference(integrator, drag, jit):
    n_steps = 50
    params = make_params()
    grads = random_grads(np.random.default_rng(2), params, n_steps)
    tx = phs_optax.phs(LR, MASS, FRICTION, integrator=integrator, drag=drag)
    ref = Reference(LR, MASS, FRICTION, integrator=integrator, drag=drag)

    lib = run_library(tx, params, grads, jit=jit)
    compare_runs(lib, run_reference(ref, grads), params, goal=False)
    assert isinstance(lib[-1][1], phs_optax.PHSState)


def test_euler_first_update_is_zero_and_each_gradient_acts_one_step_late():
    params = make_params()
    grads = random_grads(np.random.default_rng(3), params, 2)
    tx = phs_optax.phs(LR, MASS, FRICTION, integrator="euler", drag="velocity")
    (u0, _), (u1, _) = run_library(tx, params, grads)
    for leaf in jax.tree.leaves(u0):
        np.testing.assert_array_equal(leaf, 0.0)
    # u_1 = (alpha / m) * p_1 = (alpha / m) * (-alpha * g_0)
    want = [
        -(LR / MASS) * LR * np.asarray(g, np.float64) for g in jax.tree.leaves(grads[0])
    ]
    assert_leaves_close(jax.tree.leaves(u1), want, "second update")


def test_brake_happens_exactly_once_at_first_step_reaching_goal():
    # Threshold (1 - 0.5) * 2 = 1: reached at step 4, left, reached again at 8.
    values = np.array(
        [2.0, 1.8, 1.5, 1.2, 0.9, 1.4, 1.6, 1.1, 0.7, 0.6, 1.3, 0.5], np.float32
    )
    params, lib, want, ref = run_goal_pair(values, integrator="symplectic")

    assert ref.brake_step == 4
    compare_runs(lib, want, params)
    assert brake_flags(lib) == [k >= 4 for k in range(len(values))]
    assert [int(s.brake_step) for _, s in lib] == [-1] * 4 + [4] * 8
    np.testing.assert_allclose(
        [s.friction for _, s in lib],
        [FRICTION] * 4 + [FRICTION * BRAKE_FACTOR] * 8,
        rtol=1e-7,
    )


def test_loss_exactly_at_goal_brakes_and_one_ulp_above_does_not():
    # goal 0.25 of L0 = 4: the threshold 3 is exact in float32 and float64.
    at_goal = np.array([4.0, 3.5, 3.0, 3.2], np.float32)
    params, lib, want, ref = run_goal_pair(at_goal, goal=0.25)
    assert ref.brake_step == 2
    compare_runs(lib, want, params)
    assert int(lib[-1][1].brake_step) == 2

    above = at_goal.copy()
    above[2] = np.nextafter(np.float32(3.0), np.float32(np.inf))
    _, lib, _, ref = run_goal_pair(above, goal=0.25)
    assert not ref.braked and not any(brake_flags(lib))


@pytest.mark.parametrize("drag", DRAGS)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_step_reaching_goal_already_uses_raised_friction(integrator, drag):
    cross_at = 6
    values = np.array([2.0, 1.9, 1.7, 1.6, 1.4, 1.2, 0.8, 0.7], np.float32)
    params = make_params()
    grads = random_grads(np.random.default_rng(4), params, len(values))
    tx, _ = goal_pair(integrator, drag)
    lib = run_library(tx, params, grads, values)

    _, before = lib[cross_at - 1]
    updates, after = lib[cross_at]
    assert not bool(before.braked) and bool(after.braked)
    assert int(after.brake_step) == cross_at
    np.testing.assert_allclose(after.friction, FRICTION * BRAKE_FACTOR, rtol=1e-7)

    def expected(friction):
        """Momentum and update of step ``cross_at`` under ``friction``."""
        rate = friction / MASS if drag == "velocity" else friction
        decay = math.exp(-LR * rate) if integrator == "conformal" else 1 - LR * rate
        p_old = [np.asarray(p, np.float64) for p in jax.tree.leaves(before.momentum)]
        g = [np.asarray(x, np.float64) for x in jax.tree.leaves(grads[cross_at])]
        p_new = [decay * p - LR * gi for p, gi in zip(p_old, g, strict=True)]
        moving = p_old if integrator == "euler" else p_new
        return p_new, [LR / MASS * p for p in moving]

    raised_p, raised_u = expected(FRICTION * BRAKE_FACTOR)
    old_p, _ = expected(FRICTION)
    assert_leaves_close(jax.tree.leaves(after.momentum), raised_p, "momentum")
    assert_leaves_close(jax.tree.leaves(updates), raised_u, "updates")
    # ... and not the momentum the exploration friction would have given.
    got = np.concatenate([np.ravel(p) for p in jax.tree.leaves(after.momentum)])
    old = np.concatenate([np.ravel(p) for p in old_p])
    assert not np.allclose(got, old, rtol=1e-3, atol=1e-4)


def test_stays_braked_when_loss_rises_again():
    values = np.array([2.0, 1.5, 0.9] + [2.5, 3.0, 4.0, 1.9, 2.2, 5.0, 2.0], np.float32)
    params, lib, want, ref = run_goal_pair(values, drag="velocity")

    compare_runs(lib, want, params)
    assert brake_flags(lib) == [False, False] + [True] * 8
    assert [int(s.brake_step) for _, s in lib[2:]] == [2] * 8
    for _, state in lib[2:]:
        np.testing.assert_allclose(state.friction, FRICTION * BRAKE_FACTOR, rtol=1e-7)
        np.testing.assert_allclose(state.initial_loss, 2.0, rtol=0)


def test_initial_loss_argument_overrides_first_value():
    # With L0 = 4 the threshold is 2: the first value, 3, is not the reference,
    # and the goal is reached at step 3 (1.9), not at 1.5 = (1 - 0.5) * 3.
    values = np.array([3.0, 2.5, 2.2, 1.9, 1.4, 1.0], np.float32)
    params, lib, want, ref = run_goal_pair(values, initial_loss=4.0)

    assert ref.brake_step == 3
    compare_runs(lib, want, params)
    assert [float(s.initial_loss) for _, s in lib] == [4.0] * len(values)
    assert int(lib[-1][1].brake_step) == 3

    # Without the argument the first value is the reference: braking at 1.4.
    params, lib, want, ref = run_goal_pair(values)
    assert ref.brake_step == 4
    compare_runs(lib, want, params)
    assert [float(s.initial_loss) for _, s in lib] == [3.0] * len(values)


def test_first_value_already_at_goal_of_given_initial_loss_brakes_at_step_zero():
    values = np.array([1.5, 1.8, 2.5], np.float32)
    params, lib, want, ref = run_goal_pair(values, initial_loss=4.0)

    assert ref.brake_step == 0
    compare_runs(lib, want, params)
    assert brake_flags(lib) == [True] * 3
    assert int(lib[0][1].brake_step) == 0


def test_initial_loss_is_nan_until_a_finite_value_arrives():
    values = np.array([np.nan, np.inf, 2.0, 1.5], np.float32)
    _, lib, _, _ = run_goal_pair(values)
    got = [float(s.initial_loss) for _, s in lib]
    assert math.isnan(got[0]) and math.isnan(got[1]) and got[2:] == [2.0, 2.0]


SMOOTHING = {
    "raw": {},
    "ema": {"ema_decay": 0.75},
    "window": {"accumulation_size": 3},
}


@pytest.mark.parametrize("smoothing", SMOOTHING)
def test_nonfinite_loss_is_not_initial_loss_and_never_brakes(smoothing):
    # Threshold (1 - 0.5) * 2 = 1; -inf and NaN would be "below" it.
    nan, inf = np.nan, np.inf
    values = np.array(
        [nan, inf, 2.0, -inf, 1.9, nan, 1.8, -inf, 2.1, inf, 1.7, 1.6, nan, 1.9],
        np.float32,
    )
    params, lib, want, ref = run_goal_pair(
        values, integrator="euler", **SMOOTHING[smoothing]
    )

    compare_runs(lib, want, params, monitored=True)
    assert not any(brake_flags(lib))
    assert [int(s.brake_step) for _, s in lib] == [-1] * len(values)
    assert float(lib[-1][1].initial_loss) == 2.0
    assert all(np.isfinite(s.friction) for _, s in lib)
    # The steps with non-finite losses still moved with their gradients.
    for k in (0, 3, 5):
        assert any(np.any(u != 0) for u in jax.tree.leaves(lib[k + 1][0]))


@pytest.mark.parametrize("smoothing", SMOOTHING)
def test_brake_after_nonfinite_losses_matches_reference(smoothing):
    nan, inf = np.nan, np.inf
    values = np.array(
        [inf, 2.0, 1.6, -inf, 1.2, 0.8, nan, 0.7, 0.6, 0.5, nan, 0.4, 0.3, 0.2],
        np.float32,
    )
    params, lib, want, ref = run_goal_pair(
        values, integrator="conformal", drag="velocity", **SMOOTHING[smoothing]
    )
    assert ref.braked and ref.min_margin > MIN_MARGIN
    compare_runs(lib, want, params, monitored=True)


def test_ema_smoothing_matches_reference():
    # One lucky minibatch at step 10, then a sustained fall from step 20 on.
    values = np.array([2.0] * 10 + [0.5] + [2.0] * 9 + [0.6] * 20, np.float32)
    params, lib, want, ref = run_goal_pair(values, ema_decay=0.75)

    # The EMA is 1.97 at step 19, then 0.6 + 1.37 * 0.75**k after k steps at 0.6:
    # 1.03 at step 23, 0.93 at step 24.
    assert ref.brake_step == 24 and ref.min_margin > MIN_MARGIN
    compare_runs(lib, want, params, monitored=True)
    assert int(lib[-1][1].brake_step) == 24


def test_window_mean_smoothing_matches_reference():
    # Windows of 5: steps 0-4, 5-9, 10-14 (mean 1.7 with the lucky 0.5), 15-19,
    # 20-24 (mean 0.6): compared, and braking, only when a window completes.
    values = np.array([2.0] * 10 + [0.5] + [2.0] * 9 + [0.6] * 10, np.float32)
    params, lib, want, ref = run_goal_pair(values, accumulation_size=5)

    assert ref.brake_step == 24 and ref.min_margin > MIN_MARGIN
    compare_runs(lib, want, params, monitored=True)
    assert brake_flags(lib) == [k >= 24 for k in range(len(values))]
    monitored = [float(s.monitored_loss) for _, s in lib]
    assert all(math.isnan(x) for x in monitored[:4])
    np.testing.assert_allclose(monitored[4:24], [2.0] * 10 + [1.7] * 5 + [2.0] * 5)
    np.testing.assert_allclose(monitored[24:29], 0.6, rtol=1e-6)


def test_window_mean_compares_only_when_window_completes():
    # Windows of 3 on 2 0.5 0.4 | 2 2 2: the first mean, 0.97, brakes at step
    # 2, never at step 1 whose value alone is below the threshold 1.
    values = np.array([2.0, 0.5, 0.4, 2.0, 2.0, 2.0], np.float32)
    params, lib, want, ref = run_goal_pair(values, accumulation_size=3)
    assert ref.brake_step == 2
    compare_runs(lib, want, params, monitored=True)
    assert brake_flags(lib) == [False, False, True, True, True, True]


@pytest.mark.parametrize("smoothing", ["ema", "window"])
def test_lucky_minibatch_brakes_raw_but_not_smoothed(smoothing):
    values = np.array([2.0] * 10 + [0.5] + [2.0] * 9, np.float32)
    params, lib, want, ref = run_goal_pair(values)
    assert ref.brake_step == 10
    compare_runs(lib, want, params)
    assert int(lib[-1][1].brake_step) == 10

    smoothed = {"ema_decay": 0.75} if smoothing == "ema" else {"accumulation_size": 5}
    params, lib, want, ref = run_goal_pair(values, **smoothed)
    assert not ref.braked
    compare_runs(lib, want, params, monitored=True)
    assert not any(brake_flags(lib))


def _reference_linear(init, end, steps):
    return lambda k: init + (end - init) * min(k, steps) / steps


def _reference_inverse_time(init, rate):
    return lambda k: init / (1.0 + rate * k)


SCHEDULES = {
    "linear": (
        optax.linear_schedule(0.1, 0.01, transition_steps=30),
        _reference_linear(0.1, 0.01, 30),
    ),
    "inverse_time": (
        lambda count: 0.1 / (1.0 + 0.05 * count),
        _reference_inverse_time(0.1, 0.05),
    ),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_learning_rate_schedule_matches_reference(integrator, schedule):
    lib_lr, ref_lr = SCHEDULES[schedule]
    n_steps, cross_at = 45, 17
    values = crossing_losses(np.random.default_rng(5), n_steps, GOAL, cross_at)
    params, lib, want, ref = run_goal_pair(
        values,
        integrator=integrator,
        seed=6,
        learning_rate=lib_lr,
        reference_learning_rate=ref_lr,
    )
    assert ref.brake_step == cross_at
    compare_runs(lib, want, params)


@pytest.mark.parametrize("drag", DRAGS)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_goal_phs_with_brake_factor_one_equals_phs(integrator, drag):
    n_steps = 40
    rng = np.random.default_rng(7)
    values = crossing_losses(rng, n_steps, GOAL, 11)
    params = make_params()
    grads = random_grads(rng, params, n_steps)
    goal_tx = phs_optax.goal_phs(
        LR, MASS, FRICTION, GOAL, 1.0, integrator=integrator, drag=drag
    )
    phs_tx = phs_optax.phs(LR, MASS, FRICTION, integrator=integrator, drag=drag)

    with_goal = run_library(goal_tx, params, grads, values)
    plain = run_library(phs_tx, params, grads)
    assert int(with_goal[-1][1].brake_step) == 11  # it brakes, to no effect
    for k, ((u1, s1), (u2, s2)) in enumerate(zip(with_goal, plain, strict=True)):
        for a, b in zip(
            jax.tree.leaves((u1, s1.momentum)),
            jax.tree.leaves((u2, s2.momentum)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"step {k}")
        np.testing.assert_allclose(s1.friction, FRICTION, rtol=1e-7)


def test_axis_name_brakes_every_replica_on_the_mean_loss():
    n_replicas, n_steps = 3, 12
    rng = np.random.default_rng(8)
    # Replica 0 alone would brake at step 3; the mean reaches 1 at step 7.
    values = np.full((n_steps, n_replicas), 2.0, np.float32)
    values[3:, 0] = 0.5
    values[7:, 1:] = 0.6
    mean = values.astype(np.float64).mean(axis=1)
    params = make_params()
    grads = [random_grads(rng, params, n_steps) for _ in range(n_replicas)]

    tx = phs_optax.goal_phs(LR, MASS, FRICTION, GOAL, BRAKE_FACTOR, axis_name="r")
    stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)
    update = jax.jit(
        jax.vmap(lambda g, s, v: tx.update(g, s, None, value=v), axis_name="r")
    )
    state = jax.vmap(tx.init)(stack([params] * n_replicas))
    lib = []
    for k in range(n_steps):
        updates, state = update(stack([g[k] for g in grads]), state, values[k])
        lib.append(jax.device_get((updates, state)))

    for r in range(n_replicas):
        ref = Reference(
            LR,
            MASS,
            FRICTION,
            GOAL,
            BRAKE_FACTOR,
            integrator="conformal",
            drag="momentum",
        )
        want = run_reference(ref, grads[r], mean)
        assert ref.brake_step == 7 and ref.min_margin > MIN_MARGIN
        replica = [jax.tree.map(lambda x, r=r: x[r], record) for record in lib]
        compare_runs(replica, want, params)


def test_state_scalars_are_float32_int32_and_bool():
    values = np.array([2.0, 0.5], np.float32)
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), make_params())
    grads = jax.tree.map(jnp.ones_like, params)
    tx = phs_optax.goal_phs(LR, MASS, FRICTION, GOAL, BRAKE_FACTOR, ema_decay=0.5)
    for state in (tx.init(params), run_library(tx, params, [grads] * 2, values)[-1][1]):
        assert state.count.dtype == np.int32
        assert state.brake_step.dtype == np.int32
        assert state.braked.dtype == np.bool_
        for name in ("friction", "initial_loss", "monitored_loss", "loss_sum"):
            assert getattr(state, name).dtype == np.float32, name


# ---------------------------------------------------------------------------
# Property test over random hyperparameters.
# ---------------------------------------------------------------------------


def random_walk_losses(rng, n_steps, nonfinite_rate):
    """A noisy, mostly falling loss with occasional NaN and +-inf values."""
    log_loss = np.log(rng.uniform(0.5, 3.0)) + np.cumsum(
        rng.normal(-0.05, 0.15, n_steps)
    )
    values = np.exp(log_loss)
    bad = rng.random(n_steps) < nonfinite_rate
    values[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
    return values.astype(np.float32)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    integrator=st.sampled_from(INTEGRATORS),
    drag=st.sampled_from(DRAGS),
    smoothing=st.sampled_from(["raw", "ema", "window"]),
    learning_rate=st.floats(1e-3, 0.5),
    mass=st.floats(0.1, 10.0),
    explore_damping=st.floats(1e-3, 0.3),  # alpha * c before the brake
    brake_damping=st.floats(0.3, 1.8),  # alpha * c after it, |1 - alpha c| <= 0.8
    goal=st.floats(0.05, 0.9),
    ema_decay=st.floats(0.0, 0.95),
    accumulation_size=st.integers(1, 4),
    initial_loss=st.one_of(st.none(), st.floats(0.5, 4.0)),
    nonfinite_rate=st.sampled_from([0.0, 0.15]),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_hyperparameters_match_reference(
    integrator,
    drag,
    smoothing,
    learning_rate,
    mass,
    explore_damping,
    brake_damping,
    goal,
    ema_decay,
    accumulation_size,
    initial_loss,
    nonfinite_rate,
    seed,
):
    n_steps = 30
    lr, m, goal = f32(learning_rate), f32(mass), f32(goal)
    rate = explore_damping / lr
    friction = f32(rate * m if drag == "velocity" else rate)
    brake_factor = f32(brake_damping / explore_damping)
    smoothing_args = {
        "raw": {},
        "ema": {"ema_decay": f32(ema_decay)},
        "window": {"accumulation_size": accumulation_size},
    }[smoothing]
    if initial_loss is not None:
        smoothing_args["initial_loss"] = f32(initial_loss)

    rng = np.random.default_rng(seed)
    values = random_walk_losses(rng, n_steps, nonfinite_rate)
    params = {"a": np.zeros((2, 3), np.float32), "b": [np.zeros(4, np.float32)]}
    grads = random_grads(rng, params, n_steps)
    hyper = (lr, m, friction, goal, brake_factor)
    ref = Reference(*hyper, integrator=integrator, drag=drag, **smoothing_args)
    want = run_reference(ref, grads, values)
    assume(ref.min_margin > MIN_MARGIN)

    tx = phs_optax.goal_phs(*hyper, integrator=integrator, drag=drag, **smoothing_args)
    lib = run_library(tx, params, grads, values, jit=False)
    compare_runs(lib, want, params, monitored=True)
