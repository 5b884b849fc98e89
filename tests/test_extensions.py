"""The options of goal_phs beyond the paper, for several minima in one run.

Deadline (optionally restoring the best params), goal adaptation, release of
the brake (by steps or by kinetic energy, at most ``max_releases`` times) and
kicks through the port at a release. Most tests step :func:`phs_optax.goal_phs`
side by side with :class:`PhaseReference`, an independent float64 NumPy state
machine written from the rules in the docstring of ``goal_phs`` (not from its
code), on a small random pytree and a scripted loss sequence, and check that
the phases switch at exactly the updates the rules dictate and that updates,
momentum and params agree at every step. Scripted losses and energy
thresholds keep a clear distance from every threshold, so float32 rounding
never flips a decision.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_reference import assert_leaves_close, make_params, random_grads

import phs_optax
from phs_optax._dynamics import phs_step

# Exact in float32. Before a brake alpha * gamma = 0.015625, after it 0.375.
LR, MASS, FRICTION, GOAL, BRAKE_FACTOR = 0.0625, 2.0, 0.25, 0.5, 24.0


# ---------------------------------------------------------------------------
# The reference.
# ---------------------------------------------------------------------------


class PhaseReference:
    """goal_phs with every option beyond the paper, in float64, one update at a time.

    Conformal or symplectic integrator, momentum drag; raw, EMA or window-mean
    monitored loss. ``step`` takes the gradient leaves, the param leaves the
    update is for and the loss of those params, and returns the update leaves.
    """

    def __init__(
        self,
        *,
        goal=GOAL,
        integrator="conformal",
        ema_decay=None,
        accumulation_size=None,
        deadline=None,
        on_deadline="brake",
        goal_patience=None,
        goal_decay=0.5,
        release_after=None,
        release_energy=None,
        max_releases=None,
        kick_energy=None,
    ):
        self.lr, self.mass, self.gamma = LR, MASS, FRICTION
        self.goal, self.brake_factor, self.integrator = goal, BRAKE_FACTOR, integrator
        self.ema_decay, self.window_size = ema_decay, accumulation_size
        self.deadline, self.on_deadline = deadline, on_deadline
        self.patience, self.goal_decay = goal_patience, goal_decay
        self.release_after, self.release_energy = release_after, release_energy
        self.max_releases, self.kick_energy = max_releases, kick_energy

        self.count = 0
        self.momentum = None
        self.braked = False
        self.brake_step = self.last_brake_step = -1
        self.phase_start = 0
        self.releases = 0
        self.reference = math.nan
        self.monitored = math.nan
        self.window = []
        self.goal_in_force = goal
        self.best_loss, self.best_params = math.nan, None
        self.friction = FRICTION
        # What happened at each update, for the assertions of the tests.
        self.events = {}  # update -> "goal", "deadline", "restore" or "release"
        self.energies = {}  # update -> kinetic energy checked at its start
        self.margins = []  # relative distances of the compared values to thresholds

    def kinetic_energy(self):
        return sum(float(np.sum(p * p)) for p in self.momentum) / (2.0 * self.mass)

    def _monitor(self, value):
        """Updates the monitored loss; returns whether the goal compares it now."""
        if not math.isfinite(value):
            return False
        if math.isnan(self.reference):
            self.reference = value
        if self.ema_decay is not None:
            b = self.ema_decay
            self.monitored = (
                value
                if math.isnan(self.monitored)
                else b * self.monitored + (1 - b) * value
            )
            return True
        if self.window_size is not None:
            self.window.append(value)
            if len(self.window) < self.window_size:
                return False
            self.monitored = sum(self.window) / len(self.window)
            self.window = []
            return True
        self.monitored = value
        return True

    def _release_due(self, k):
        if not self.braked or k <= self.last_brake_step:
            return False
        if self.max_releases is not None and self.releases >= self.max_releases:
            return False
        due = False
        if self.release_after is not None:
            due |= k - self.last_brake_step >= self.release_after
        if self.release_energy is not None:
            self.energies[k] = self.kinetic_energy()
            due |= self.energies[k] < self.release_energy
            self.margins.append(abs(self.energies[k] / self.release_energy - 1))
        return due

    def step(self, grad_leaves, param_leaves, value):
        k = self.count
        grads = [np.asarray(g, np.float64) for g in grad_leaves]
        params = [np.asarray(x, np.float64) for x in param_leaves]
        if self.momentum is None:
            self.momentum = [np.zeros_like(g) for g in grads]
        value = float(value)

        compared = self._monitor(value)
        if compared and not self.monitored >= self.best_loss:  # NaN best: any
            self.best_loss, self.best_params = (
                self.monitored,
                [x.copy() for x in params],
            )

        released = self._release_due(k)
        if released:
            self.events[k] = "release"
            self.braked = False
            self.phase_start = k
            self.reference = self.monitored
            self.releases += 1
            if self.kick_energy is not None:
                norm = math.sqrt(sum(float(np.sum(p * p)) for p in self.momentum))
                if norm > 0:
                    size = math.sqrt(2.0 * self.mass * self.kick_energy)
                    self.momentum = [p + size * p / norm for p in self.momentum]

        restore = False
        if not self.braked:
            n = 0 if self.patience is None else (k - self.phase_start) // self.patience
            self.goal_in_force = self.goal * self.goal_decay**n
            threshold = (1.0 - self.goal_in_force) * self.reference
            if compared and not released:
                self.margins.append(abs(self.monitored / threshold - 1))
            if compared and not released and self.monitored <= threshold:
                self.braked, self.events[k] = True, "goal"
            elif self.deadline is not None and k - self.phase_start >= self.deadline:
                self.braked, self.events[k] = True, "deadline"
                if self.on_deadline == "restore_best" and self.best_params is not None:
                    restore, self.events[k] = True, "restore"
            if self.braked:
                self.last_brake_step = k
                if self.brake_step < 0:
                    self.brake_step = k

        self.friction = self.gamma * (self.brake_factor if self.braked else 1.0)
        decay = math.exp(-self.lr * self.friction)
        if self.integrator != "conformal":
            decay = 1.0 - self.lr * self.friction
        new_momentum = [
            decay * p - self.lr * g for p, g in zip(self.momentum, grads, strict=True)
        ]
        updates = [(self.lr / self.mass) * p for p in new_momentum]
        if restore:
            updates = [b - x for b, x in zip(self.best_params, params, strict=True)]
            new_momentum = [np.zeros_like(p) for p in new_momentum]
        self.momentum = new_momentum
        self.count += 1
        return updates

    def steps_of(self, event):
        return [k for k, e in sorted(self.events.items()) if e == event]


# ---------------------------------------------------------------------------
# Running both.
# ---------------------------------------------------------------------------


class Record(NamedTuple):
    params: list  # the params the update was for (leaves)
    updates: list
    state: dict  # scalars and momentum after the update


SCALARS = (
    "friction",
    "braked",
    "brake_step",
    "last_brake_step",
    "phase_start",
    "releases",
    "goal_in_force",
    "best_loss",
)


def run_library(tx, values, *, seed=0, grads=None, jit=True, state=None):
    """Steps ``tx`` on the scripted losses, applying its updates to the params."""
    params = make_params()
    if grads is None:
        grads = random_grads(np.random.default_rng(seed), params, len(values))
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(params) if state is None else state
    records = []
    for k, value in enumerate(values):
        updates, state = update(grads[k], state, params, value=np.float32(value))
        records.append(Record(*jax.device_get((params, updates, state))))
        params = optax.apply_updates(params, updates)
    return records


def run_reference(ref, values, *, seed=0, grads=None):
    params = make_params()
    if grads is None:
        grads = random_grads(np.random.default_rng(seed), params, len(values))
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
    records = []
    for k, value in enumerate(values):
        updates = ref.step(jax.tree.leaves(grads[k]), leaves, value)
        state = {name: getattr(ref, name) for name in SCALARS}
        state["initial_loss"] = ref.reference
        state["momentum"] = [p.copy() for p in ref.momentum]
        records.append(Record(leaves, updates, state))
        leaves = [x + u for x, u in zip(leaves, updates, strict=True)]
    return records


def compare(lib, ref):
    """Every update, momentum, param and phase field agrees at every step."""
    assert len(lib) == len(ref)
    for k, (got, want) in enumerate(zip(lib, ref, strict=True)):
        state = got.state
        assert int(state.count) == k + 1
        assert_leaves_close(jax.tree.leaves(got.params), want.params, f"{k}: params")
        assert_leaves_close(jax.tree.leaves(got.updates), want.updates, f"{k}: updates")
        assert_leaves_close(
            jax.tree.leaves(state.momentum), want.state["momentum"], f"{k}: momentum"
        )
        for name in ("braked", "brake_step", "last_brake_step", "phase_start"):
            assert getattr(state, name) == want.state[name], f"step {k}: {name}"
        assert int(state.releases) == want.state["releases"], f"step {k}: releases"
        for name in ("friction", "goal_in_force", "best_loss", "initial_loss"):
            np.testing.assert_allclose(
                getattr(state, name),
                want.state[name],
                rtol=1e-6,
                equal_nan=True,
                err_msg=f"step {k}: {name}",
            )


def goal_tx(**options):
    return phs_optax.goal_phs(LR, MASS, FRICTION, GOAL, BRAKE_FACTOR, **options)


def run_pair(values, *, seed=0, grads=None, **options):
    """Library and reference on the same losses and gradients, compared."""
    ref_options = {k: v for k, v in options.items() if k != "track_best_params"}
    ref = PhaseReference(**ref_options)
    want = run_reference(ref, values, seed=seed, grads=grads)
    # No decision of the run is close enough to its threshold for float32
    # rounding to flip it.
    assert min(ref.margins, default=1.0) > 1e-3
    lib = run_library(goal_tx(**options), values, seed=seed, grads=grads)
    compare(lib, want)
    return lib, ref


def fields(lib, name):
    return [np.asarray(getattr(r.state, name)).item() for r in lib]


def leaves64(tree):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


# Never within 5% of the threshold 1.0 of the first reference 2.0.
NEVER_HALVED = np.array(
    [2.0, 1.9, 1.8, 1.7, 1.75, 1.6, 1.5, 1.55, 1.4, 1.45, 1.3, 1.35, 1.3, 1.25],
    np.float32,
)


# ---------------------------------------------------------------------------
# Defaults: exactly the method as it was.
# ---------------------------------------------------------------------------


class LegacyState(NamedTuple):
    count: jax.Array
    momentum: optax.Updates
    friction: jax.Array
    initial_loss: jax.Array
    braked: jax.Array
    brake_step: jax.Array
    monitored_loss: jax.Array
    loss_sum: jax.Array
    loss_count: jax.Array


def legacy_goal_phs(integrator, ema_decay=None, accumulation_size=None):
    """``goal_phs`` without the options beyond the paper (commit 424cd01),
    verbatim apart from names: the specification of "all options off"."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)

    def init(params):
        nan = f32(jnp.nan)
        zeros = jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), p.dtype), params)
        return LegacyState(
            jnp.zeros([], jnp.int32), zeros, f32(FRICTION), nan,
            jnp.zeros([], jnp.bool_), jnp.full([], -1, jnp.int32), nan,
            jnp.zeros([], jnp.float32), jnp.zeros([], jnp.int32),
        )  # fmt: skip

    def update(grads, state, value):
        value = f32(value)
        is_finite = jnp.isfinite(value)
        reference = jnp.where(
            jnp.isnan(state.initial_loss) & is_finite, value, state.initial_loss
        )
        loss_sum, loss_count = state.loss_sum, state.loss_count
        compare_now = is_finite
        if accumulation_size is not None:
            loss_sum = state.loss_sum + jnp.where(is_finite, value, 0.0)
            loss_count = state.loss_count + is_finite.astype(jnp.int32)
            compare_now = loss_count >= jnp.asarray(accumulation_size, jnp.int32)
            monitored = jnp.where(
                compare_now,
                loss_sum / jnp.maximum(loss_count, 1),
                state.monitored_loss,
            )
            loss_sum = jnp.where(compare_now, 0.0, loss_sum)
            loss_count = jnp.where(compare_now, 0, loss_count)
        elif ema_decay is not None:
            decay = f32(ema_decay)
            averaged = jnp.where(
                jnp.isnan(state.monitored_loss),
                value,
                decay * state.monitored_loss + (1.0 - decay) * value,
            )
            monitored = jnp.where(is_finite, averaged, state.monitored_loss)
        else:
            monitored = jnp.where(is_finite, value, state.monitored_loss)
        goal_reached = compare_now & (monitored <= (1.0 - f32(GOAL)) * reference)
        braked = state.braked | goal_reached
        friction = f32(FRICTION) * jnp.where(braked, f32(BRAKE_FACTOR), 1.0)
        updates, momentum = phs_step(
            grads,
            state.momentum,
            learning_rate=f32(LR),
            mass=f32(MASS),
            friction=friction,
            integrator=integrator,
            drag="momentum",
        )
        return updates, LegacyState(
            optax.safe_increment(state.count), momentum, friction, reference, braked,
            jnp.where(braked & ~state.braked, state.count, state.brake_step),
            monitored, loss_sum, loss_count,
        )  # fmt: skip

    return init, update


SMOOTHINGS = {"raw": {}, "ema": {"ema_decay": 0.75}, "window": {"accumulation_size": 3}}


@pytest.mark.parametrize(
    "integrator, smoothing",
    [("euler", "window"), ("symplectic", "ema"), ("conformal", "raw")],
)
def test_all_options_off_is_bit_identical_to_the_method_before_them(
    integrator, smoothing
):
    values = np.concatenate([[np.nan, 2.0], np.linspace(1.9, 0.4, 16), [np.inf, 0.3]])
    params = make_params()
    grads = random_grads(np.random.default_rng(1), params, len(values))
    tx = goal_tx(integrator=integrator, **SMOOTHINGS[smoothing])
    init, legacy = legacy_goal_phs(integrator, **SMOOTHINGS[smoothing])
    update, legacy = jax.jit(tx.update), jax.jit(legacy)
    state, old = tx.init(params), init(params)
    for k, value in enumerate(values.astype(np.float32)):
        updates, state = update(grads[k], state, params, value=value)
        old_updates, old = legacy(grads[k], old, value)
        chex.assert_trees_all_equal(
            (updates, [getattr(state, name) for name in LegacyState._fields]),
            (old_updates, list(old)),
        )
    assert bool(state.braked)
    # The new fields say what happened: one brake, no release, one phase.
    assert int(state.last_brake_step) == int(state.brake_step) >= 0
    assert int(state.phase_start) == 0 and int(state.releases) == 0
    assert float(state.goal_in_force) == np.float32(GOAL)
    assert state.best_params is None and state.kick_key is None


def test_new_state_fields_have_fixed_dtypes_and_optional_fields_are_none():
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), make_params())
    state = goal_tx().init(params)
    for name, dtype in {
        "goal_in_force": jnp.float32,
        "phase_start": jnp.int32,
        "last_brake_step": jnp.int32,
        "releases": jnp.int32,
        "best_loss": jnp.float32,
    }.items():
        assert getattr(state, name).dtype == dtype and getattr(state, name).shape == ()
    assert state.best_params is None and state.kick_key is None
    assert math.isnan(float(state.best_loss)) and int(state.last_brake_step) == -1

    full = goal_tx(
        deadline=3,
        on_deadline="restore_best",
        release_after=2,
        kick_energy=1.0,
        kick_direction="random",
    ).init(params)
    chex.assert_trees_all_equal_dtypes(full.best_params, params)
    assert full.kick_key.dtype == jnp.uint32


# ---------------------------------------------------------------------------
# Deadline.
# ---------------------------------------------------------------------------


def test_deadline_brakes_at_exactly_update_deadline_when_goal_is_not_reached():
    lib, ref = run_pair(NEVER_HALVED, deadline=7)

    assert ref.events == {7: "deadline"}
    assert fields(lib, "braked") == [k >= 7 for k in range(len(NEVER_HALVED))]
    assert fields(lib, "brake_step")[-1] == fields(lib, "last_brake_step")[-1] == 7
    np.testing.assert_allclose(fields(lib, "friction")[6:8], [0.25, 6.0])


def test_goal_reached_before_the_deadline_brakes_as_without_it():
    values = np.array([2.0, 1.8, 1.5, 0.9, 1.2, 1.1, 1.3, 1.2], np.float32)
    lib, ref = run_pair(values, deadline=5)
    assert ref.events == {3: "goal"}
    without = run_library(goal_tx(), values)
    chex.assert_trees_all_equal(
        [(r.updates, r.state.momentum) for r in lib],
        [(r.updates, r.state.momentum) for r in without],
    )


def test_goal_reached_at_the_deadline_update_is_a_goal_brake_without_restore():
    values = np.array([2.0, 1.8, 1.5, 1.2, 0.9, 1.1], np.float32)
    lib, ref = run_pair(values, deadline=4, on_deadline="restore_best")
    assert ref.events == {4: "goal"}
    assert fields(lib, "brake_step")[-1] == 4


def test_restore_best_jumps_back_to_the_params_of_the_lowest_finite_loss():
    # Lowest finite loss 1.2 at update 5 (-inf at 7 is no loss), deadline at 9.
    values = np.array(
        [2.0, 1.7, 1.6, 1.4, 1.3, 1.2, 1.5, -np.inf, 1.6, 1.7, 1.8, 1.5], np.float32
    )
    lib, ref = run_pair(values, deadline=9, on_deadline="restore_best")

    assert ref.events == {9: "restore"}
    assert float(lib[-1].state.best_loss) == np.float32(1.2)
    best = jax.tree.leaves(lib[5].params)
    chex.assert_trees_all_close(jax.tree.leaves(lib[9].state.best_params), best)
    # Update 9 moves the params exactly to the best ones and zeroes the momentum.
    chex.assert_trees_all_close(
        leaves64(optax.apply_updates(lib[9].params, lib[9].updates)),
        leaves64(best),
        rtol=1e-6,
        atol=1e-6,
    )
    chex.assert_trees_all_close(leaves64(lib[10].params), leaves64(best), atol=1e-6)
    assert all(np.all(p == 0) for p in jax.tree.leaves(lib[9].state.momentum))
    # ... and exploitation goes on from there with the raised friction.
    assert fields(lib, "friction")[9:] == [6.0] * 3


def test_restore_best_restores_the_best_smoothed_loss_not_a_lucky_minibatch():
    # Raw loss lowest at the lucky 0.9 of update 2, the EMA lowest at update 8.
    values = np.array(
        [2.0, 1.8, 0.9, 1.9, 1.8, 1.6, 1.5, 1.3, 1.2, 1.6, 1.7, 1.8], np.float32
    )
    lib, ref = run_pair(values, ema_decay=0.5, deadline=10, on_deadline="restore_best")

    assert ref.events == {10: "restore"}
    ema = fields(lib, "monitored_loss")
    assert int(np.argmin(ema)) == 8 and int(np.argmin(values)) == 2
    np.testing.assert_allclose(float(lib[-1].state.best_loss), min(ema), rtol=1e-6)
    chex.assert_trees_all_close(
        leaves64(optax.apply_updates(lib[10].params, lib[10].updates)),
        leaves64(lib[8].params),
        atol=1e-6,
    )


def test_restore_best_with_the_current_update_best_stays_put():
    values = np.array([2.0, 1.9, 1.8, 1.7, 1.6, 1.5], np.float32)
    lib, ref = run_pair(values, deadline=5, on_deadline="restore_best")
    assert ref.events == {5: "restore"}
    assert all(np.all(u == 0) for u in jax.tree.leaves(lib[5].updates))


def test_restore_best_without_params_raises_type_error_naming_params():
    tx = goal_tx(deadline=2, on_deadline="restore_best")
    state = tx.init(make_params())
    with pytest.raises(TypeError, match="params"):
        tx.update(make_params(), state, None, value=1.0)


def test_track_best_params_keeps_the_params_of_the_best_loss_only_when_asked():
    values = np.array([2.0, 1.7, 1.5, 1.6, 1.8, 1.55], np.float32)
    tracked = run_library(goal_tx(track_best_params=True), values)
    plain = run_library(goal_tx(), values)

    assert plain[-1].state.best_params is None
    for run in (tracked, plain):
        np.testing.assert_allclose(
            fields(run, "best_loss"), [2.0, 1.7, 1.5, 1.5, 1.5, 1.5], rtol=1e-7
        )
    chex.assert_trees_all_equal(tracked[-1].state.best_params, tracked[2].params)
    chex.assert_trees_all_equal(  # tracking changes nothing else
        [r.updates for r in tracked], [r.updates for r in plain]
    )


# ---------------------------------------------------------------------------
# Goal adaptation.
# ---------------------------------------------------------------------------


def test_goal_adaptation_halves_the_goal_every_patience_updates_then_brakes():
    # Goals in force 0.5, 0.25, 0.125 from updates 0, 4, 8: thresholds 1.0,
    # 1.5, 1.75 of the reference 2.0. 1.6 at update 6 misses 1.5; update 9's
    # 1.65 meets 1.75.
    values = np.array(
        [2.0, 1.9, 1.85, 1.8, 1.8, 1.6, 1.6, 1.6, 1.8, 1.65, 1.7, 1.0], np.float32
    )
    lib, ref = run_pair(values, goal_patience=4)

    assert ref.events == {9: "goal"}
    np.testing.assert_allclose(
        fields(lib, "goal_in_force"), [0.5] * 4 + [0.25] * 4 + [0.125] * 4
    )
    assert fields(lib, "brake_step")[-1] == 9


def test_goal_decay_sets_the_factor_of_goal_adaptation():
    # Goal 0.5 then 0.1 from update 3: threshold 1.8, met by 1.7 at update 3.
    values = np.array([2.0, 1.9, 1.7, 1.7, 1.9], np.float32)
    lib, ref = run_pair(values, goal_patience=3, goal_decay=0.2)
    assert ref.events == {3: "goal"}
    np.testing.assert_allclose(
        fields(lib, "goal_in_force"), [0.5] * 3 + [0.1] * 2, rtol=1e-6
    )


def test_goal_adaptation_and_deadline_together():
    lib, ref = run_pair(NEVER_HALVED, goal_patience=3, goal_decay=0.25, deadline=5)
    # Goal 0.125 from update 3: threshold 1.75, met at update 3 (1.7).
    assert ref.events == {3: "goal"}


# ---------------------------------------------------------------------------
# Release and re-acceleration.
# ---------------------------------------------------------------------------

# Brakes at update 3 (0.9 <= 1.0); with release_after=4 released at 7, whose
# loss 1.6 is the new reference (threshold 0.8); brakes again at 10 (0.7);
# released again at 14 (loss 1.4), brakes a third time at 16 (0.6 <= 0.7).
TWO_CYCLES = np.array(
    [2.0, 1.8, 1.5, 0.9, 1.2, 1.1, 1.3, 1.6, 1.2, 0.9, 0.7, 0.8, 1.5, 1.7, 1.4, 1.0]
    + [0.6, 0.9],
    np.float32,
)


def test_release_after_steps_at_the_exact_update_with_the_new_reference():
    lib, ref = run_pair(TWO_CYCLES, release_after=4)

    assert ref.events == {
        3: "goal",
        7: "release",
        10: "goal",
        14: "release",
        16: "goal",
    }
    braked = [k in range(3, 7) or k in range(10, 14) or k >= 16 for k in range(18)]
    assert fields(lib, "braked") == braked
    np.testing.assert_allclose(
        fields(lib, "friction"), [6.0 if b else 0.25 for b in braked]
    )
    np.testing.assert_allclose(
        fields(lib, "initial_loss"), [2.0] * 7 + [1.6] * 7 + [1.4] * 4
    )
    assert fields(lib, "phase_start") == [0] * 7 + [7] * 7 + [14] * 4
    assert fields(lib, "releases") == [0] * 7 + [1] * 7 + [2] * 4
    assert fields(lib, "brake_step") == [-1] * 3 + [3] * 15  # the first brake
    assert fields(lib, "last_brake_step") == [-1] * 3 + [3] * 7 + [10] * 6 + [16] * 2


def test_max_releases_stops_releasing():
    lib, ref = run_pair(TWO_CYCLES, release_after=4, max_releases=1)
    assert ref.events == {3: "goal", 7: "release", 10: "goal"}
    assert fields(lib, "braked")[10:] == [True] * 8
    assert int(lib[-1].state.releases) == 1


def test_deadline_counts_from_the_last_release():
    values = np.concatenate([[2.0, 1.5, 0.9], NEVER_HALVED[1:]]).astype(np.float32)
    lib, ref = run_pair(values, release_after=2, deadline=4)
    # Goal at 2, release at 4 (reference 1.8, threshold 0.9 never met), so the
    # deadline brakes at 4 + 4 = 8; released again at 10, deadline at 14.
    assert ref.events == {
        2: "goal", 4: "release", 8: "deadline", 10: "release", 14: "deadline"
    }  # fmt: skip


def test_goal_adaptation_restarts_from_the_goal_at_a_release():
    values = np.array(
        [2.0, 0.9, 1.0, 1.8, 1.7, 1.65, 1.6, 1.5, 1.4, 1.5, 1.5], np.float32
    )
    lib, ref = run_pair(values, release_after=2, goal_patience=2)
    # Goal at 1, released at 3 (reference 1.8): goals 0.5, 0.5, 0.25, 0.25,
    # 0.125 from update 3 on; 0.125 * 1.8 = 0.225 below 1.8 is 1.575,
    # met by 1.5 at update 7.
    assert ref.events == {1: "goal", 3: "release", 7: "goal", 9: "release"}
    np.testing.assert_allclose(
        fields(lib, "goal_in_force"),
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.5, 0.5],
    )


def decaying_grads(params, n_steps, brake, seed=0):
    """Random gradients that shrink by 0.5 per update after ``brake``."""
    grads = random_grads(np.random.default_rng(seed), params, n_steps)
    return [
        jax.tree.map(lambda g, k=k: g * np.float32(0.5 ** max(0, k - brake)), grad)
        for k, grad in enumerate(grads)
    ]


def energy_values():
    """Brakes at 3, then the loss stays at 1.2 (never the goal of 0.6)."""
    return np.array([2.0, 1.8, 1.5, 0.9] + [1.2] * 12, np.float32)


def energy_threshold(release_at, values, grads):
    """A threshold between the energies at the start of ``release_at`` and of
    every earlier braked update, run without release."""
    ref = PhaseReference(release_energy=1e-30)  # records the energies only
    run_reference(ref, values, grads=grads)
    checked = ref.energies
    below, above = checked[release_at], min(checked[k] for k in range(4, release_at))
    assert below < 0.8 * above
    return float(np.float32(math.sqrt(below * above)))


def test_release_when_kinetic_energy_falls_below_release_energy():
    values = energy_values()
    grads = decaying_grads(make_params(), len(values), brake=3)
    threshold = energy_threshold(9, values, grads)
    lib, ref = run_pair(values, grads=grads, release_energy=threshold)

    assert ref.events == {3: "goal", 9: "release"}
    assert fields(lib, "braked") == [3 <= k < 9 for k in range(len(values))]
    np.testing.assert_allclose(fields(lib, "initial_loss")[9:], 1.2)
    # The energy the library checked at the start of update 9 is below it.
    energy = phs_optax.kinetic_energy(lib[8].state, MASS)
    assert (
        float(energy) < threshold < float(phs_optax.kinetic_energy(lib[7].state, MASS))
    )


@pytest.mark.parametrize("release_after, first", [(4, 7), (8, 9)])
def test_with_both_release_criteria_whichever_comes_first(release_after, first):
    values = energy_values()
    grads = decaying_grads(make_params(), len(values), brake=3)
    threshold = energy_threshold(9, values, grads)
    lib, ref = run_pair(
        values, grads=grads, release_energy=threshold, release_after=release_after
    )
    assert ref.steps_of("release")[0] == first


def test_brake_from_outside_counts_exploitation_from_its_update():
    tx = goal_tx(release_after=3)
    params = make_params()
    grads = random_grads(np.random.default_rng(2), params, 12)
    update = jax.jit(tx.update)
    state = tx.init(params)
    history = []
    for k in range(12):
        if k in (2, 8):  # braked by hand at 2, released at 5, by hand again at 8
            state = jax.jit(phs_optax.brake)(state)
        _, state = update(grads[k], state, params, value=2.0)
        history.append(state)
    assert [bool(s.braked) for s in history] == [
        k in (2, 3, 4, 8, 9, 10) for k in range(12)
    ]
    assert [int(s.last_brake_step) for s in history][-1] == 8
    assert int(history[-1].brake_step) == 2  # the first brake
    assert int(history[-1].releases) == 2
    assert [int(s.phase_start) for s in history][-1] == 11


# ---------------------------------------------------------------------------
# Kicks.
# ---------------------------------------------------------------------------


def kick_of(lib, k, grads):
    """The momentum increment dp of update ``k`` of a conformal run: p_{k+1} =
    d (p_k + dp) - alpha g_k, with d = exp(-alpha * gamma) (momentum drag)."""
    decay = math.exp(-LR * float(lib[k].state.friction))
    before, after = leaves64(lib[k - 1].state.momentum), leaves64(lib[k].state.momentum)
    g = leaves64(grads[k])
    return [
        (a + LR * gi) / decay - b for a, gi, b in zip(after, g, before, strict=True)
    ]


def energy_of(leaves):
    return sum(float(np.sum(x * x)) for x in leaves) / (2.0 * MASS)


def test_kick_along_the_momentum_has_exactly_kick_energy():
    values = TWO_CYCLES[:9]
    params = make_params()
    grads = random_grads(np.random.default_rng(0), params, len(values))
    lib, ref = run_pair(values, grads=grads, release_after=4, kick_energy=0.5)
    assert ref.events == {3: "goal", 7: "release"}

    dp = kick_of(lib, 7, grads)
    np.testing.assert_allclose(energy_of(dp), 0.5, rtol=1e-4)
    p = np.concatenate([np.ravel(x) for x in leaves64(lib[6].state.momentum)])
    d = np.concatenate([np.ravel(x) for x in dp])
    cosine = d @ p / (np.linalg.norm(d) * np.linalg.norm(p))
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-5)
    # Updates that are not releases are not kicked.
    np.testing.assert_allclose(energy_of(kick_of(lib, 6, grads)), 0.0, atol=1e-9)


def test_no_kick_when_the_momentum_is_zero():
    values = TWO_CYCLES[:9]
    zeros = [jax.tree.map(np.zeros_like, make_params())] * len(values)
    lib = run_library(goal_tx(release_after=4, kick_energy=0.5), values, grads=zeros)
    assert int(lib[-1].state.releases) == 1
    assert all(np.all(p == 0) for r in lib for p in jax.tree.leaves(r.state.momentum))


RANDOM_KICKS = dict(release_after=4, kick_energy=0.5, kick_direction="random")
RANDOM_KICKS_TX = goal_tx(**RANDOM_KICKS)  # one update (compiled once) for all seeds


def random_kicks(seed, values=TWO_CYCLES):
    """The kicks of the releases at 7 and 14 with ``kick_seed=seed``."""
    params = make_params()
    grads = random_grads(np.random.default_rng(0), params, len(values))
    state = goal_tx(**RANDOM_KICKS, kick_seed=seed).init(
        params
    )  # the seed is used here
    lib = run_library(RANDOM_KICKS_TX, values, grads=grads, state=state)
    assert fields(lib, "releases")[-1] == 2
    return [kick_of(lib, k, grads) for k in (7, 14)]


def test_random_kicks_have_kick_energy_and_are_reproducible_by_kick_seed():
    first, second = random_kicks(seed=3)
    for dp in (first, second):
        np.testing.assert_allclose(energy_of(dp), 0.5, rtol=1e-4)
    flat = lambda leaves: np.concatenate([np.ravel(x) for x in leaves])
    # Same seed, same kicks; each kick draws afresh; another seed, other kicks.
    again, _ = random_kicks(seed=3)
    np.testing.assert_allclose(flat(again), flat(first), rtol=1e-5, atol=1e-6)
    assert abs(flat(first) @ flat(second)) < 0.5 * np.sum(flat(first) ** 2)
    other, _ = random_kicks(seed=4)
    assert not np.allclose(flat(other), flat(first), atol=1e-2)


# ---------------------------------------------------------------------------
# jit, inject_hyperparams, vmap, axis_name.
# ---------------------------------------------------------------------------

# Deadline brakes (restoring the best params) at 3 and 8, releases at 5 and 10,
# then only the deadline at 13 (max_releases); the goal decays every 2 updates.
EVERYTHING = dict(
    deadline=3,
    on_deadline="restore_best",
    goal_patience=2,
    goal_decay=0.9,
    release_after=2,
    max_releases=2,
    kick_energy=0.25,
    kick_direction="random",
    kick_seed=1,
)


def test_jit_and_no_jit_agree_with_every_option_on():
    jitted = run_library(goal_tx(**EVERYTHING), NEVER_HALVED, jit=True)
    eager = run_library(goal_tx(**EVERYTHING), NEVER_HALVED, jit=False)
    assert fields(jitted, "last_brake_step") == [-1] * 3 + [3] * 5 + [8] * 5 + [13]
    assert fields(jitted, "releases")[-1] == 2
    for got, want in zip(jitted, eager, strict=True):
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


def test_inject_hyperparams_matches_goal_phs_with_every_option_on():
    factory = optax.inject_hyperparams(phs_optax.goal_phs)
    injected = factory(LR, MASS, FRICTION, GOAL, BRAKE_FACTOR, **EVERYTHING)
    lib = run_library(injected, NEVER_HALVED)
    plain = run_library(goal_tx(**EVERYTHING), NEVER_HALVED)
    for got, want in zip(lib, plain, strict=True):
        chex.assert_trees_all_close(
            (got.updates, got.state.inner_state), (want.updates, want.state), rtol=1e-6
        )
    hyperparams = lib[-1].state.hyperparams
    assert (
        hyperparams["deadline"].dtype == jnp.int32 and "on_deadline" not in hyperparams
    )


def test_vmap_over_two_deadlines_gives_each_its_own_brake_step():
    factory = optax.inject_hyperparams(phs_optax.goal_phs)
    hyper = dict(learning_rate=LR, mass=MASS, friction=FRICTION, goal=GOAL)
    deadlines = jnp.array([3, 6], jnp.int32)
    params = make_params()
    states = jax.vmap(
        lambda d: factory(**hyper, brake_factor=BRAKE_FACTOR, deadline=d).init(params)
    )(deadlines)
    tx = factory(**hyper, brake_factor=BRAKE_FACTOR, deadline=1)  # reads the state
    grads = random_grads(np.random.default_rng(0), params, len(NEVER_HALVED))
    step = jax.jit(
        jax.vmap(lambda g, s, v: tx.update(g, s, params, value=v), (None, 0, None))
    )
    for k, value in enumerate(NEVER_HALVED):
        _, states = step(grads[k], states, value)
    assert states.inner_state.brake_step.tolist() == [3, 6]
    np.testing.assert_allclose(states.inner_state.friction, [6.0, 6.0])


def replica_inputs():
    """Two replicas: losses 0.85 and 1.15 times TWO_CYCLES (mean TWO_CYCLES);
    replica 0 gets zero gradients, so its own kinetic energy stays 0."""
    values = np.stack([0.85 * TWO_CYCLES, 1.15 * TWO_CYCLES], axis=1)
    params = make_params()
    zeros = jax.tree.map(np.zeros_like, params)
    grads = [
        [zeros] * len(TWO_CYCLES),
        random_grads(np.random.default_rng(5), params, len(TWO_CYCLES)),
    ]
    return params, values.astype(np.float32), grads


# Released by steps at 7 and 14 (as TWO_CYCLES alone); replica 0's own energy
# 0 < 1e-6 would release it at 4, but the mean energy decides.
AXIS_OPTIONS = dict(release_energy=1e-6, release_after=4, kick_energy=0.1)
AXIS_BRAKED = [3 <= k < 7 or 10 <= k < 14 or k >= 16 for k in range(len(TWO_CYCLES))]


def test_axis_name_replicas_switch_phases_at_the_same_updates():
    params, values, grads = replica_inputs()
    stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)
    tx = goal_tx(axis_name="r", **AXIS_OPTIONS)
    update = jax.jit(
        jax.vmap(lambda g, s, v: tx.update(g, s, None, value=v), axis_name="r")
    )
    state = jax.vmap(tx.init)(stack([params] * 2))
    braked = []
    for k in range(len(TWO_CYCLES)):
        _, state = update(stack([g[k] for g in grads]), state, values[k])
        braked.append(state.braked.tolist())
    assert braked == [[b, b] for b in AXIS_BRAKED]
    assert state.releases.tolist() == [2, 2]
    assert state.last_brake_step.tolist() == [16, 16]


PMAP_CHILD = """
import json, sys
import jax, numpy as np
sys.path[:0] = sys.argv[1:3]
import phs_optax
from test_extensions import AXIS_OPTIONS, goal_tx, replica_inputs

assert jax.local_device_count() == 2
params, values, grads = replica_inputs()
stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)
tx = goal_tx(axis_name="r", **AXIS_OPTIONS)
update = jax.pmap(lambda g, s, v: tx.update(g, s, None, value=v), axis_name="r")
state = jax.pmap(tx.init)(stack([params] * 2))
braked = []
for k in range(len(values)):
    _, state = update(stack([g[k] for g in grads]), state, values[k])
    braked.append(np.asarray(state.braked).tolist())
print(json.dumps({"braked": braked, "releases": np.asarray(state.releases).tolist()}))
"""


def test_pmap_replicas_switch_phases_at_the_same_updates(tmp_path):
    import json
    import os
    import pathlib
    import subprocess
    import sys

    tests = pathlib.Path(__file__).parent
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    child = subprocess.run(
        [sys.executable, "-c", PMAP_CHILD, str(tests), str(tests.parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["braked"] == [[b, b] for b in AXIS_BRAKED]
    assert result["releases"] == [2, 2]


# ---------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------

BAD_OPTIONS = [
    ("deadline", {"deadline": 0}),
    ("deadline", {"deadline": 2.5}),
    ("goal_patience", {"goal_patience": -1}),
    ("release_after", {"release_after": 0}),
    ("max_releases", {"release_after": 2, "max_releases": 0}),
    ("goal_decay", {"goal_patience": 2, "goal_decay": 1.0}),
    ("goal_decay", {"goal_patience": 2, "goal_decay": 0.0}),
    ("release_energy", {"release_energy": 0.0}),
    ("kick_energy", {"release_after": 2, "kick_energy": -1.0}),
    ("on_deadline", {"deadline": 3, "on_deadline": "rewind"}),
    ("kick_direction", {"release_after": 2, "kick_energy": 1.0, "kick_direction": "up"}),
    ("kick_seed", {"release_after": 2, "kick_energy": 1.0, "kick_direction": "random", "kick_seed": 0.5}),
    ("track_best_params", {"track_best_params": jnp.array(True)}),
    # Options that need another one.
    ("on_deadline", {"on_deadline": "restore_best"}),
    ("kick_energy", {"kick_energy": 1.0}),
    ("max_releases", {"max_releases": 2}),
    ("kick_direction", {"release_after": 2, "kick_direction": "random"}),
    ("kick_seed", {"release_after": 2, "kick_energy": 1.0, "kick_seed": 3}),
    ("goal_decay", {"goal_decay": 0.5}),
    ("deadline", {"goal": None, "deadline": 3}),
    ("goal_patience", {"goal": None, "goal_patience": 3}),
]  # fmt: skip


@pytest.mark.parametrize(
    "name, options",
    BAD_OPTIONS,
    ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_OPTIONS)],
)
def test_bad_option_raises_value_error_naming_it(name, options):
    hyper = dict(learning_rate=LR, mass=MASS, friction=FRICTION, goal=GOAL)
    hyper.update(brake_factor=BRAKE_FACTOR)
    hyper.update(options)
    with pytest.raises(ValueError, match=rf"goal_phs: {name}.*{name}="):
        phs_optax.goal_phs(**hyper)


# --- the goal's lower bound ----------------------------------------------------


def _first_braked_update(tx, losses):
    params = jnp.zeros(2)
    state = tx.init(params)
    for k, loss in enumerate(losses):
        _, state = tx.update(jnp.ones(2), state, params, value=jnp.float32(loss))
        if bool(state.braked):
            return k
    return None


@pytest.mark.parametrize("first_loss", [0.0, -1.0])
def test_a_first_loss_at_or_below_the_floor_never_brakes_on_the_goal(first_loss):
    tx = phs_optax.goal_phs(0.1, 1.0, 0.1, goal=0.5, brake_factor=10.0)
    losses = [first_loss, first_loss - 1.0, -100.0, -1e6]
    assert _first_braked_update(tx, losses) is None
    # ... while the deadline and brake() still work.
    with_deadline = phs_optax.goal_phs(
        0.1, 1.0, 0.1, goal=0.5, brake_factor=10.0, deadline=2
    )
    assert _first_braked_update(with_deadline, losses) == 2


def test_loss_floor_measures_the_goal_above_the_floor():
    # Reference -1 above the floor -3: the goal 0.5 is reached at -2 (half of
    # the 2 units above the floor gone), not at -0.5 as without a floor.
    tx = phs_optax.goal_phs(0.1, 1.0, 0.1, goal=0.5, brake_factor=10.0, loss_floor=-3.0)
    assert _first_braked_update(tx, [-1.0, -1.5, -1.9, -2.0, -2.5]) == 3
    no_floor = phs_optax.goal_phs(0.1, 1.0, 0.1, goal=0.5, brake_factor=10.0)
    assert _first_braked_update(no_floor, [1.0, 0.6, 0.5]) == 2


def test_loss_floor_off_is_bit_for_bit_the_plain_goal():
    plain = phs_optax.goal_phs(0.1, 1.0, 0.1, goal=0.5, brake_factor=10.0)
    zero_floor = phs_optax.goal_phs(
        0.1, 1.0, 0.1, goal=0.5, brake_factor=10.0, loss_floor=0.0
    )
    losses = [4.0, 3.0, 2.5, 2.0, 1.9, 1.0]
    assert (
        _first_braked_update(plain, losses)
        == _first_braked_update(zero_floor, losses)
        == 3
    )


def test_an_initial_loss_at_or_below_the_floor_is_rejected():
    with pytest.raises(ValueError, match=r"initial_loss must be > loss_floor = -2"):
        phs_optax.goal_phs(
            0.1, 1.0, 0.1, goal=0.5, brake_factor=2.0, initial_loss=-2.0,
            loss_floor=-2.0,
        )  # fmt: skip


def test_a_brake_factor_changed_after_the_brake_sets_the_friction_from_the_next_update():
    tx = optax.inject_hyperparams(phs_optax.goal_phs)(
        learning_rate=0.1, mass=1.0, friction=0.1, goal=0.5, brake_factor=10.0
    )
    params = jnp.zeros(2)
    state = tx.init(params)
    for loss in (4.0, 1.0):  # the second update reaches the goal
        _, state = tx.update(jnp.ones(2), state, params, value=jnp.float32(loss))
    inner = state.inner_state
    assert bool(inner.braked)
    np.testing.assert_allclose(inner.friction, 1.0)
    state.hyperparams["brake_factor"] = jnp.asarray(30.0)
    _, state = tx.update(jnp.ones(2), state, params, value=jnp.float32(0.5))
    np.testing.assert_allclose(state.inner_state.friction, 3.0, rtol=1e-6)
    assert bool(state.inner_state.braked)
    assert int(state.inner_state.brake_step) == 1
