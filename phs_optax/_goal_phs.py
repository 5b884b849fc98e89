"""Goal-oriented port-Hamiltonian momentum: explore, then brake once at a goal."""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from phs_optax import _braking, _options, _validation
from phs_optax._dynamics import phs_step
from phs_optax._phs import DYNAMICS_DOC, f32, learning_rate_at, zeros_like


class GoalPHSState(NamedTuple):
    """State of :func:`goal_phs`: plain named fields.

    Read and set them by name (``state.braked``, ``state._replace(...)``,
    ``optax.tree_utils.tree_get(opt_state, "braked")``). Scalars are float32,
    int32 or bool whatever the params. The fields of the options beyond the
    paper keep their initial values when the options are off, except
    ``best_loss``, which is always tracked.
    """

    count: jax.Array  #: int32: the number of updates done.
    momentum: optax.Updates  #: p, a pytree like the params.
    friction: jax.Array  #: float32: the friction in force (raised at once by brake()).
    brake_factor: jax.Array  #: float32: the brake factor of the last update.
    braked: jax.Array  #: bool: whether the raised friction is in force.
    brake_step: jax.Array  #: int32: the first update with raised friction; -1 before.
    initial_loss: jax.Array  #: float32: the reference loss of the goal; NaN before.
    monitored_loss: jax.Array  #: float32: the (smoothed) loss last monitored; NaN.
    loss_sum: jax.Array  #: float32: the current window's sum (accumulation_size).
    loss_count: jax.Array  #: int32: how many losses the current window holds.
    best_loss: jax.Array  #: float32: the lowest finite monitored loss; NaN before.
    goal_in_force: jax.Array  #: float32: the goal of this phase (goal_patience).
    phase_start: jax.Array  #: int32: the update that began exploration.
    last_brake_step: jax.Array  #: int32: the update that began exploitation; -1 before.
    releases: jax.Array  #: int32: how many times the brake was released.
    best_params: optax.Params | None  #: the params at best_loss, if kept; else None.
    kick_key: jax.Array | None  #: PRNG key of random kicks; else None.


def goal_phs(
    learning_rate: optax.ScalarOrSchedule,
    mass: float | jax.Array,
    friction: float | jax.Array,
    goal: float | jax.Array | None,
    brake_factor: float | jax.Array,
    *,
    integrator: str = "conformal",
    drag: str = "momentum",
    initial_loss: float | jax.Array | None = None,
    ema_decay: float | jax.Array | None = None,
    accumulation_size: int | jax.Array | None = None,
    loss_floor: float | jax.Array | None = None,
    axis_name: str | None = None,
    momentum_dtype: Any | None = None,
    deadline: int | jax.Array | None = None,
    on_deadline: str = "brake",
    goal_patience: int | jax.Array | None = None,
    goal_decay: float | jax.Array | None = None,
    release_after: int | jax.Array | None = None,
    release_energy: float | jax.Array | None = None,
    max_releases: int | jax.Array | None = None,
    kick_energy: float | jax.Array | None = None,
    kick_direction: str = "momentum",
    kick_seed: int | jax.Array | None = None,
    track_best_params: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Goal-oriented port-Hamiltonian momentum ("who breaks early, loses").

    Explores with the low friction ``friction`` and, the first time the
    monitored loss has fallen by the fraction ``goal`` below the initial loss,

    .. math::

      \mathrm{monitored}_k \le (1 - \mathrm{goal}) \cdot \mathrm{initial\_loss},

    multiplies the friction once by ``brake_factor`` and keeps it there
    (exploitation). The update of the step whose loss reaches the goal already
    uses the raised friction. The paper's "breaking at 0.65 with factor 49" is
    ``goal=0.65, brake_factor=49``. The goal presumes a loss bounded below by 0,
    such as cross-entropy; for a loss with another lower bound give it as
    ``loss_floor``, and the goal is measured on ``loss - loss_floor``:

    .. math::

      \mathrm{monitored}_k - \mathrm{loss\_floor}
      \le (1 - \mathrm{goal}) \cdot (\mathrm{initial\_loss} - \mathrm{loss\_floor}).

    A reference loss at or below the floor (0 by default) leaves no fraction to
    fall by: the goal then never brakes (the deadline and :func:`brake` still
    do), rather than braking at once on a rule that means nothing there.
    {dynamics}
    The monitored loss is the ``value`` passed to ``update`` (default, as in
    the paper), or, to brake on a trend rather than on one lucky minibatch,
    its exponential moving average ``ema_k = ema_decay * ema_{k-1} + (1 -
    ema_decay) * value_k`` (started at the first value), or the mean over
    consecutive windows of ``accumulation_size`` steps, compared once per
    window (as ``accumulation_size`` in ``optax.contrib.reduce_on_plateau``).

    A non-finite ``value`` (NaN or inf) never becomes the initial loss, never
    enters the smoothing and never triggers the brake; the step itself is taken
    with the gradients as given (wrap in ``optax.apply_if_finite`` to skip steps
    whose gradients are not finite).

    Options (all off by default; off, the updates and the state fields
    ``count`` to ``loss_count`` are bit for bit those of the method without
    them). Updates are
    numbered ``k = 0, 1, ...`` (``state.count`` before the update); an
    exploration phase begins at ``s`` (``phase_start``: 0, or the last
    release) and an exploitation phase at ``b`` (``last_brake_step``, the first
    update with the raised friction). The ``value`` passed at update ``k`` is
    the loss of the ``params`` passed at update ``k``.

    * Deadline (``deadline=D``): if the goal has not been reached in the ``D``
      updates ``s, ..., s + D - 1``, the brake is applied anyway: update ``s +
      D`` is the first with the raised friction. With
      ``on_deadline="restore_best"`` that update returns ``best_params -
      params`` and zeroes the momentum instead of a dynamics step, so the
      params jump back to the best point seen so far (the params at which the
      lowest finite monitored loss ``best_loss`` was observed, this update
      included); if no finite monitored loss has been seen yet, it is an
      ordinary braked update. A goal reached at update ``s + D`` is an ordinary
      goal brake.
    * Goal adaptation (``goal_patience=P``, ``goal_decay=r``, default 0.5): the
      goal in force at exploration update ``k`` is

      .. math::

        \mathrm{goal}_k = \mathrm{goal} \cdot r^{\lfloor (k - s) / P \rfloor},

      i.e. each ``P`` updates without reaching the goal make it easier
      (a smaller required reduction); the brake comes at the first ``k`` with
      ``monitored_k <= (1 - goal_k) * reference``. ``goal_in_force`` records
      ``goal_k`` (frozen during exploitation, back to ``goal`` at a release).
    * Release (``release_after=R`` and/or ``release_energy=E``): exploitation
      ends at the first update ``k > b`` with ``k - b >= R`` (after ``R``
      updates with the raised friction) or whose starting momentum has kinetic
      energy ``|p_k|^2 / (2 m) < E`` (averaged over ``axis_name`` if given),
      whichever comes first, at most ``max_releases`` times. At a release at
      update ``k`` the friction is back to ``friction`` for update ``k``
      itself, a new exploration phase starts (``s = k``), the goal in force is
      back to ``goal``, and the reference of the goal becomes the monitored
      loss at update ``k`` (stored in ``initial_loss``; the next brake comes
      at the first later ``j`` with ``monitored_j <= (1 - goal_j) *
      monitored_k``, or at the deadline; if no finite loss has been monitored
      yet, the next finite ``value`` is the reference). The EMA and the
      windows of the monitored loss run on across releases. ``brake_step`` keeps the first brake,
      ``last_brake_step`` the latest, ``releases`` counts the releases.
    * Kick (``kick_energy=K``): at each release, before the dynamics of that
      update, the momentum gets an increment ``dp = sqrt(2 m K) * u`` through
      the port, with ``u`` a unit vector (global norm over the pytree), so
      ``|dp|^2 / (2 m) = K``. ``kick_direction="momentum"``: ``u = p / |p|``
      (no kick if ``p = 0``); ``"random"``: ``u = z / |z|`` with standard
      normal ``z`` drawn from the key ``kick_key`` in the state (seeded by
      ``kick_seed``, default 0, and split at each kick; under ``jax.pmap``
      every replica draws the same ``z``).
    * ``best_loss`` (always) is the lowest finite monitored loss of the run, at
      the updates where the goal compares it (the first of equal ones). ``track_best_params=True`` (or
      ``on_deadline="restore_best"``) keeps the params of that update in
      ``best_params``: one extra copy of the params in the optimizer state
      (``best_params`` is None otherwise, at no memory cost), and ``update``
      then needs ``params``.

    Every numeric option may be a traced array, integer options int arrays
    (``jax.vmap`` over stacked hyperparameters, ``optax.inject_hyperparams``,
    where a value changed in ``hyperparams`` takes effect from the next update;
    ``kick_seed`` is used by ``init`` only). None switches an option off, so
    whether an option is on is fixed when the transformation is built; for
    this reason ``goal_decay`` and ``kick_seed`` default to None (meaning 0.5
    and 0), which also keeps them out of ``inject_hyperparams``' hyperparams
    unless given. With ``optax.inject_hyperparams``, ``track_best_params``
    must be static: give it in ``static_args`` unless the optax version keeps
    bools static by itself (optax 0.2.8 does), as for ``momentum_dtype``; the
    strings ``on_deadline`` and ``kick_direction`` and every None stay static
    by themselves.

    Args:
      learning_rate: the step length alpha, a float or an optax schedule.
      mass: the mass m > 0.
      friction: the exploration friction gamma >= 0.
      goal: the fraction in (0, 1) by which the loss must fall below the
        initial loss to trigger the brake.
      brake_factor: the factor >= 1 that multiplies the friction at the brake.
        The friction in force is ``friction * brake_factor`` at every braked
        update, so with ``optax.inject_hyperparams`` a ``brake_factor`` (or
        ``friction``) changed after the brake sets the friction in force from
        the next update on; the brake itself is not undone.
      integrator: ``"conformal"`` (default), ``"symplectic"`` or ``"euler"``.
      drag: ``"momentum"`` (default) or ``"velocity"``.
      initial_loss: the reference loss of the goal; by default the first finite
        ``value`` that ``update`` receives.
      ema_decay: if given, brake on the exponential moving average of the loss
        with this decay in [0, 1).
      accumulation_size: if given, brake on the mean loss over windows of this
        many steps.
      loss_floor: the lower bound of the loss (default 0); the goal is
        measured on ``loss - loss_floor``.
      axis_name: if given, ``value`` is averaged over this mapped axis (e.g. of
        ``jax.pmap``) inside ``update``, so every replica brakes at the same step.
      momentum_dtype: dtype of the momentum; by default that of each param.
      deadline: if given, a whole number >= 1 of exploration updates after
        which the brake is applied even without reaching the goal.
      on_deadline: ``"brake"`` (default) or ``"restore_best"`` (needs
        ``deadline``): what the deadline brake does besides braking.
      goal_patience: if given, a whole number >= 1 of exploration updates after
        which the goal in force is multiplied by ``goal_decay``, repeatedly.
      goal_decay: the factor in (0, 1) of goal adaptation; default 0.5 (give
        only with ``goal_patience``).
      release_after: if given, the number >= 1 of updates with the raised
        friction after which the brake is released.
      release_energy: if given, the brake is released when the kinetic energy
        of the momentum falls below this threshold > 0.
      max_releases: if given, the largest number >= 1 of releases.
      kick_energy: if given, the kinetic energy > 0 of the kick at a release.
      kick_direction: ``"momentum"`` (default) or ``"random"``.
      kick_seed: the seed of random kicks (default 0).
      track_best_params: whether to keep the params of ``best_loss`` in the
        state (a static Python bool).

    Returns:
      An :class:`optax.GradientTransformationExtraArgs` whose ``update`` takes
      the current loss as the keyword ``value``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, phs_optax
      >>> tx = phs_optax.goal_phs(0.1, mass=10.0, friction=0.1, goal=0.65,
      ...                         brake_factor=49.0)
      >>> params = jnp.array([2.0, -1.0])
      >>> loss_fn = lambda x: jnp.sum(x ** 2)
      >>> state = tx.init(params)
      >>> loss, grads = jax.value_and_grad(loss_fn)(params)
      >>> updates, state = tx.update(grads, state, params, value=loss)
      >>> params = optax.apply_updates(params, updates)
      >>> bool(state.braked)
      False

    References:
      Burghoff, Heinrich Monells and Gottschalk, `Who breaks early, looses: goal
      oriented training of deep neural networks based on port Hamiltonian
      dynamics <https://arxiv.org/abs/2304.07070>`_, 2023

      França, Sulam, Robinson and Vidal, `Conformal symplectic and relativistic
      optimization <https://arxiv.org/abs/1903.04100>`_, NeurIPS 2020
    """
    _validation.check_dynamics(
        "goal_phs", learning_rate, mass, friction, integrator, drag
    )
    check = _validation.check
    check("goal_phs", "goal", goal, lambda v: (v > 0) & (v < 1), "in (0, 1) or None")
    check("goal_phs", "brake_factor", brake_factor, lambda v: v >= 1, ">= 1")
    floor = 0.0 if loss_floor is None else loss_floor
    if _validation.is_concrete(floor):
        check(
            "goal_phs",
            "initial_loss",
            initial_loss,
            lambda v: v > float(floor),
            f"> loss_floor = {float(floor):g} (or None)",
        )
    _validation.check_dtype("goal_phs", "momentum_dtype", momentum_dtype)
    if not isinstance(track_best_params, bool):
        raise ValueError(
            "goal_phs: track_best_params must be a Python bool (with "
            "optax.inject_hyperparams, give it in static_args), got "
            f"track_best_params={track_best_params!r}."
        )
    options = {
        "goal": goal,
        "ema_decay": ema_decay,
        "accumulation_size": accumulation_size,
        "loss_floor": loss_floor,
        "deadline": deadline,
        "on_deadline": on_deadline,
        "goal_patience": goal_patience,
        "goal_decay": goal_decay,
        "release_after": release_after,
        "release_energy": release_energy,
        "max_releases": max_releases,
        "kick_energy": kick_energy,
        "kick_direction": kick_direction,
        "kick_seed": kick_seed,
    }
    _options.check_options("goal_phs", options)
    restore_best = on_deadline == "restore_best"
    keep_best_params = track_best_params or restore_best
    releasing = release_after is not None or release_energy is not None
    random_kicks = kick_energy is not None and kick_direction == "random"

    def init_fn(params: optax.Params) -> GoalPHSState:
        def nan_or(value: Any) -> jax.Array:
            return f32(jnp.nan if value is None else value)

        int32 = lambda value: jnp.full([], value, jnp.int32)
        return GoalPHSState(
            count=int32(0),
            momentum=zeros_like(params, momentum_dtype),
            friction=f32(friction),
            brake_factor=f32(brake_factor),
            braked=jnp.zeros([], jnp.bool_),
            brake_step=int32(-1),
            initial_loss=nan_or(initial_loss),
            monitored_loss=nan_or(None),
            loss_sum=f32(0.0),
            loss_count=int32(0),
            best_loss=nan_or(None),
            goal_in_force=nan_or(goal),
            phase_start=int32(0),
            last_brake_step=int32(-1),
            releases=int32(0),
            best_params=(
                jax.tree.map(lambda p: jnp.array(p, copy=True), params)
                if keep_best_params
                else None
            ),
            kick_key=(
                jax.random.PRNGKey(0 if kick_seed is None else kick_seed)
                if random_kicks
                else None
            ),
        )

    def monitor(
        loss: jax.Array, is_finite: jax.Array, state: GoalPHSState
    ) -> _braking.LossSignal:
        if accumulation_size is not None:
            return _braking.window_signal(
                loss,
                is_finite,
                state.monitored_loss,
                state.loss_sum,
                state.loss_count,
                _int32(accumulation_size),
            )
        if ema_decay is not None:
            monitored = _braking.ema_signal(
                loss, is_finite, state.monitored_loss, f32(ema_decay)
            )
        else:
            monitored = _braking.raw_signal(loss, is_finite, state.monitored_loss)
        return _braking.LossSignal(
            monitored, is_finite, state.loss_sum, state.loss_count
        )

    def release_now(state: GoalPHSState) -> jax.Array:
        if not releasing:
            return jnp.zeros([], jnp.bool_)
        kinetic_energy = None
        if release_energy is not None:
            kinetic_energy = _braking.squared_norm(state.momentum) / (2.0 * f32(mass))
            if axis_name is not None:
                kinetic_energy = jax.lax.pmean(kinetic_energy, axis_name)
        return _braking.release_due(
            state.braked,
            state.count - state.last_brake_step,
            state.releases,
            kinetic_energy=kinetic_energy,
            release_after=_optional(_int32, release_after),
            release_energy=_optional(f32, release_energy),
            max_releases=_optional(_int32, max_releases),
        )

    def goal_now(count: jax.Array, phase_start: jax.Array) -> jax.Array:
        if goal_patience is None:
            return f32(goal)
        decay = f32(0.5 if goal_decay is None else goal_decay)
        return _braking.adapted_goal(
            f32(goal), count - phase_start, _int32(goal_patience), decay
        )

    def update_fn(
        updates: optax.Updates,
        state: GoalPHSState,
        params: optax.Params | None = None,
        *,
        value: jax.Array | float | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, GoalPHSState]:
        del extra_args
        _check_update_arguments(value, params, keep_best_params)
        loss = f32(value)
        chex.assert_shape(loss, ())
        if axis_name is not None:
            loss = jax.lax.pmean(loss, axis_name)
        count = state.count
        is_finite = jnp.isfinite(loss)
        reference = _braking.first_finite(state.initial_loss, loss)
        signal = monitor(loss, is_finite, state)
        monitored = signal.monitored

        new_best = _braking.is_new_best(monitored, signal.compare_now, state.best_loss)
        best_loss = jnp.where(new_best, monitored, state.best_loss)
        best_params = state.best_params
        if keep_best_params:
            best_params = _braking.tree_where(new_best, params, state.best_params)

        # A release ends exploitation before this update's goal and dynamics;
        # its monitored loss is the next phase's reference, not compared now.
        release = release_now(state)
        was_braked = state.braked & ~release
        phase_start = jnp.where(release, count, state.phase_start)
        reference = jnp.where(release, monitored, reference)

        if goal is None:
            goal_in_force = state.goal_in_force
            reached = jnp.zeros([], jnp.bool_)
        else:
            goal_k = goal_now(count, phase_start)
            goal_in_force = jnp.where(was_braked, state.goal_in_force, goal_k)
            reached = (
                signal.compare_now
                & _braking.goal_reached(
                    monitored, reference, goal_k, _optional(f32, loss_floor)
                )
                & ~release
            )
        deadline_brake = jnp.zeros([], jnp.bool_)
        if deadline is not None:
            deadline_brake = (
                ~was_braked
                & ~reached
                & _braking.deadline_passed(count - phase_start, _int32(deadline))
            )
        braked = was_braked | reached | deadline_brake
        newly_braked = braked & ~was_braked

        momentum, kick_key = state.momentum, state.kick_key
        if kick_energy is not None:
            kicked, next_key = _braking.kick(
                momentum,
                kick_key,
                mass=f32(mass),
                energy=f32(kick_energy),
                direction=kick_direction,
            )
            momentum = _braking.tree_where(release, kicked, momentum)
            if random_kicks:
                kick_key = jnp.where(release, next_key, kick_key)

        factor = f32(brake_factor)
        friction_in_force = f32(friction) * jnp.where(braked, factor, 1.0)
        updates, momentum = phs_step(
            updates,
            momentum,
            learning_rate=learning_rate_at(learning_rate, count),
            mass=f32(mass),
            friction=friction_in_force,
            integrator=integrator,
            drag=drag,
        )
        if restore_best:
            restore = deadline_brake & jnp.isfinite(best_loss)
            updates = jax.tree.map(
                lambda u, best, p: jnp.where(restore, (best - p).astype(u.dtype), u),
                updates,
                best_params,
                params,
            )
            momentum = jax.tree.map(
                lambda p: jnp.where(restore, jnp.zeros_like(p), p), momentum
            )
        return updates, GoalPHSState(
            count=optax.safe_increment(count),
            momentum=momentum,
            friction=friction_in_force,
            brake_factor=factor,
            braked=braked,
            brake_step=jnp.where(
                newly_braked & (state.brake_step < 0), count, state.brake_step
            ),
            initial_loss=reference,
            monitored_loss=monitored,
            loss_sum=signal.loss_sum,
            loss_count=signal.loss_count,
            best_loss=best_loss,
            goal_in_force=goal_in_force,
            phase_start=phase_start,
            last_brake_step=jnp.where(newly_braked, count, state.last_brake_step),
            releases=state.releases + release.astype(jnp.int32),
            best_params=best_params,
            kick_key=kick_key,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_update_arguments(
    value: Any, params: optax.Params | None, needs_params: bool
) -> None:
    if value is None:
        raise TypeError(
            "goal_phs needs the current loss as the keyword `value`: call "
            "tx.update(grads, opt_state, params, value=loss)."
        )
    if needs_params and params is None:
        raise TypeError(
            "goal_phs with on_deadline='restore_best' or track_best_params=True "
            "needs the params: call tx.update(grads, opt_state, params, "
            "value=loss)."
        )


def _int32(value: Any) -> jax.Array:
    """An integer option (a Python int or, from inject_hyperparams, an array)."""
    return jnp.asarray(value).astype(jnp.int32)


def _optional(convert: Any, value: Any) -> jax.Array | None:
    return None if value is None else convert(value)


goal_phs.__doc__ = goal_phs.__doc__.replace("{dynamics}", DYNAMICS_DOC)
