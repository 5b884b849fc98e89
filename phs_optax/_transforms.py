"""The port-Hamiltonian (PHS) optimizer and its goal-oriented variant."""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from phs_optax import _validation
from phs_optax._dynamics import phs_step

ScalarOrSchedule = float | jax.Array | optax.Schedule

_DYNAMICS_DOC = """
  The dynamics are the damped Hamiltonian system of the paper's eq. 3, with
  ``alpha`` the learning rate, ``m`` the mass, ``gamma`` the friction and ``p``
  the momentum (zero at the start); the integrator is applied to
  ``H(theta, p) = |p|^2 / (2 m) + L(theta)``::

      theta_{k+1} = theta_k + (alpha / m) * p_k                       (eq. 2)
      p_{k+1}     = p_k - alpha * (gamma / m) * p_k - alpha * grad L(theta_k)

  ``integrator`` chooses how this is discretised, always with
  ``p_{k+1} = d * p_k - alpha * grad L(theta_k)``:

  * ``"euler"``: eq. 2 to the letter, ``d = 1 - alpha * c`` and theta moves
    with the old momentum ``p_k`` (so the very first update is zero and each
    gradient acts one step late).
  * ``"symplectic"``: the semi-implicit (symplectic) Euler step, ``d = 1 -
    alpha * c`` and theta moves with ``p_{k+1}``. This is the heavy-ball method
    with momentum ``1 - alpha * c`` and step ``alpha^2 / m``.
  * ``"conformal"`` (default): the conformal symplectic Euler step (Franca et
    al., 2020): the friction flow ``dp/dt = -c p`` is integrated exactly,
    ``d = exp(-alpha * c)``, then the symplectic Euler step. ``d`` stays in
    ``(0, 1]`` for every ``alpha * c``, where the explicit factor ``1 - alpha *
    c`` is negative or below -1 for some rows of the paper's tables (e.g. alpha
    = 1e-4, m = 1e-3, gamma = 10 braked by 5 or 100 with ``drag="velocity"``),
    which makes the momentum flip sign every step or blow up. For small ``alpha
    * c`` it agrees with eq. 2's factor to first order, ``exp(-x) = 1 - x +
    O(x^2)``. It is the default because it runs every row of the paper's Tables
    1 and 2 without overflow with either drag.

  ``drag`` chooses the damping rate ``c`` of the friction force ``-c p``:

  * ``"velocity"``: ``c = gamma / m``, eq. 2 and 3 as printed (the force is
    ``-gamma * velocity``). ``integrator="euler", drag="velocity"`` is eq. 2 to
    the letter.
  * ``"momentum"`` (default): ``c = gamma``. Evidence for this default: in the
    heavy-ball reading the effective gradient step is ``alpha / (m * c)``. With
    ``c = gamma / m`` it is ``alpha / gamma``, which is 1.0 at the paper's
    headline row (alpha = 0.1, gamma = 0.1, m = 10; an independent PyTorch run
    of eq. 2 there died by epoch 3 at 10% test accuracy where the paper reports
    90.36%) and 1e-5 plain gradient descent at alpha = 1e-4, gamma = 10, m =
    1e-3 (11% accuracy, paper 90.17%). With ``c = gamma`` the effective step is
    ``alpha / (m * gamma)``, between 0.01 and 0.1 for every row of both tables,
    and those rows train (88.6% and 89.3% in the same PyTorch runs). This
    project's pilot (``results/protocol/``, batch 64, 10 epochs) agrees: three
    PHS rows of Table 2 reach 88.8/87.1/88.0% with ``drag="momentum"`` and
    25.6/68.3/79.9% with ``drag="velocity"`` (paper 90.36/90.34/90.13%). The
    paper's code is not public.
"""


class PHSState(NamedTuple):
    """State of :func:`phs`."""

    count: jax.Array  # int32 scalar: the number of updates done.
    momentum: optax.Updates  # p, a pytree like the params.


# The scalars of GoalPHSState, packed in two arrays: XLA's CPU backend runs
# every scalar that an update changes as its own small kernel (about 0.3 us
# each), which made goal_phs's update on LeNet-5 1.09-1.11x as slow as optax's
# momentum on one core with separate fields, a median of 1.04x packed
# (benchmarks/RESULTS.md, session 10).
_FLOAT_SCALARS = (
    "friction",
    "initial_loss",
    "monitored_loss",
    "loss_sum",
    "goal_in_force",
    "best_loss",
)
_INT_SCALARS = (
    "count",
    "braked",
    "brake_step",
    "loss_count",
    "phase_start",
    "last_brake_step",
    "releases",
)


class _PackedScalar:
    """A scalar of :class:`GoalPHSState` read by name from its packed array.

    Maps over the packed array as a pytree, so a wrapper around it (a
    ``flax.nnx`` Variable) wraps the scalar too; works on stacked (vmapped,
    pmapped) states, whose scalars come out stacked.
    """

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        if name in _FLOAT_SCALARS:
            self.packed, self.index = "float_scalars", _FLOAT_SCALARS.index(name)
        else:
            self.packed, self.index = "int_scalars", _INT_SCALARS.index(name)

    def __get__(self, state: Any, owner: type | None = None) -> Any:
        if state is None:
            return self
        dtype = jnp.bool_ if self.name == "braked" else None

        def read(packed: jax.Array) -> jax.Array:
            value = packed[..., self.index]
            return value if dtype is None else value.astype(dtype)

        return jax.tree.map(read, getattr(state, self.packed))


class GoalPHSState(NamedTuple):
    """State of :func:`goal_phs`.

    Its scalars are read by name (``state.friction``, ``state.braked``, ...)
    and are float32, int32 or bool whatever the params; they are stored packed
    in ``float_scalars`` (float32) and ``int_scalars`` (int32, ``braked`` as 0
    or 1), so that XLA updates them in one kernel each. Change them with
    :meth:`replace_scalars`.
    """

    momentum: optax.Updates  # p, a pytree like the params.
    float_scalars: jax.Array  # float32[..., 6]: the float scalars, in this order.
    int_scalars: jax.Array  # int32[..., 7]: the integer and bool scalars.
    best_params: optax.Params | None  # params at best_loss, only if kept; else None.
    kick_key: jax.Array | None  # uint32[2] PRNG key of random kicks; else None.

    count = _PackedScalar("count", "int32: the number of updates done.")
    friction = _PackedScalar(
        "friction", "float32: the friction in force at the last update."
    )
    initial_loss = _PackedScalar(
        "initial_loss", "float32: the reference loss of the goal; NaN."
    )
    braked = _PackedScalar("braked", "bool: whether the brake has been applied.")
    brake_step = _PackedScalar(
        "brake_step",
        "int32: the update that first used the raised friction; -1 before.",
    )
    monitored_loss = _PackedScalar(
        "monitored_loss",
        "float32: the (smoothed) loss last compared with the goal; NaN.",
    )
    loss_sum = _PackedScalar(
        "loss_sum",
        "float32: sum of the losses in the current window (accumulation_size).",
    )
    loss_count = _PackedScalar(
        "loss_count", "int32: how many losses the current window holds."
    )
    # Scalars of the options deadline, goal_patience, release_*, kick_* and
    # track_best_params (issue 6); they keep their initial values when the
    # options are off, except best_loss, which is always tracked.
    goal_in_force = _PackedScalar(
        "goal_in_force", "float32: the goal of the current phase (goal_patience); NaN."
    )
    phase_start = _PackedScalar(
        "phase_start", "int32: the update that began the exploration phase."
    )
    last_brake_step = _PackedScalar(
        "last_brake_step", "int32: the update that began exploitation; -1 before."
    )
    releases = _PackedScalar(
        "releases", "int32: how many times the brake was released."
    )
    best_loss = _PackedScalar(
        "best_loss", "float32: the lowest finite monitored loss so far; NaN."
    )

    def replace_scalars(self, **scalars: Any) -> GoalPHSState:
        """A copy with the named scalars replaced (stacked states take stacked values).

        Raises:
          TypeError: for a name that is not a scalar of the state.
        """
        unknown = sorted(set(scalars) - set(_FLOAT_SCALARS + _INT_SCALARS))
        if unknown:
            raise TypeError(
                f"GoalPHSState has no scalar {', '.join(map(repr, unknown))}; its "
                f"scalars are {', '.join(_FLOAT_SCALARS + _INT_SCALARS)}."
            )
        packed = {"float_scalars": self.float_scalars, "int_scalars": self.int_scalars}
        for name, value in scalars.items():
            field = GoalPHSState.__dict__[name]
            # A wrapped value (an nnx Variable) gives its array.
            raw = jnp.asarray(jax.tree.leaves(value)[0])
            packed[field.packed] = jax.tree.map(
                lambda array, i=field.index, raw=raw: array.at[..., i].set(
                    raw.astype(array.dtype)
                ),
                packed[field.packed],
            )
        return self._replace(**packed)


def _pack_goal_phs_state(
    momentum: optax.Updates,
    best_params: optax.Params | None,
    kick_key: jax.Array | None,
    **scalars: jax.Array,
) -> GoalPHSState:
    """A GoalPHSState from its scalars given by name (all of them)."""
    return GoalPHSState(
        momentum=momentum,
        float_scalars=jnp.stack([_f32(scalars[name]) for name in _FLOAT_SCALARS]),
        int_scalars=jnp.stack(
            [jnp.asarray(scalars[name]).astype(jnp.int32) for name in _INT_SCALARS]
        ),
        best_params=best_params,
        kick_key=kick_key,
    )


def _zeros_like(params: optax.Params, dtype: Any) -> optax.Updates:
    return jax.tree.map(
        lambda p: jnp.zeros(
            jnp.shape(p), jnp.asarray(p).dtype if dtype is None else dtype
        ),
        params,
    )


def _learning_rate_at(learning_rate: ScalarOrSchedule, count: jax.Array) -> jax.Array:
    value = learning_rate(count) if callable(learning_rate) else learning_rate
    return jnp.asarray(value, jnp.float32)


def _f32(value: Any) -> jax.Array:
    return jnp.asarray(value, jnp.float32)


def phs(
    learning_rate: ScalarOrSchedule,
    mass: float | jax.Array,
    friction: float | jax.Array,
    *,
    integrator: str = "conformal",
    drag: str = "momentum",
    momentum_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Port-Hamiltonian momentum with fixed friction (the paper's "PHS" baseline).
    {dynamics}
    Args:
      learning_rate: the step length alpha, a float or an optax schedule of the
        step count.
      mass: the mass m > 0.
      friction: the friction gamma >= 0.
      integrator: ``"conformal"`` (default), ``"symplectic"`` or ``"euler"``.
      drag: ``"momentum"`` (default) or ``"velocity"``.
      momentum_dtype: dtype of the momentum; by default that of each param.

    Returns:
      An :class:`optax.GradientTransformationExtraArgs`; its updates are added
      to the params (``optax.apply_updates``). Extra keyword arguments of
      ``update`` (such as ``value``) are accepted and ignored.

    Example:
      >>> import jax.numpy as jnp, optax, phs_optax
      >>> tx = phs_optax.phs(learning_rate=0.1, mass=10.0, friction=0.1)
      >>> params = {{"w": jnp.ones(3)}}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({{"w": jnp.ones(3)}}, state, params)
    """
    _validation.check_dynamics("phs", learning_rate, mass, friction, integrator, drag)
    _validation.check_dtype("phs", "momentum_dtype", momentum_dtype)

    def init_fn(params: optax.Params) -> PHSState:
        return PHSState(
            count=jnp.zeros([], jnp.int32), momentum=_zeros_like(params, momentum_dtype)
        )

    def update_fn(
        updates: optax.Updates,
        state: PHSState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, PHSState]:
        del params, extra_args  # e.g. `value`, accepted so phs and goal_phs swap freely
        updates, momentum = phs_step(
            updates,
            state.momentum,
            learning_rate=_learning_rate_at(learning_rate, state.count),
            mass=_f32(mass),
            friction=_f32(friction),
            integrator=integrator,
            drag=drag,
        )
        return updates, PHSState(
            count=optax.safe_increment(state.count), momentum=momentum
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _validate_goal(
    goal: Any,
    brake_factor: Any,
    initial_loss: Any,
    ema_decay: Any,
    accumulation_size: Any,
) -> None:
    check = _validation.check
    check("goal_phs", "goal", goal, lambda v: (v > 0) & (v < 1), "in (0, 1) or None")
    check("goal_phs", "brake_factor", brake_factor, lambda v: v >= 1, ">= 1")
    check("goal_phs", "initial_loss", initial_loss, lambda v: v > 0, "> 0 (or None)")
    check("goal_phs", "ema_decay", ema_decay, lambda v: (v >= 0) & (v < 1), "in [0, 1)")
    check(
        "goal_phs",
        "accumulation_size",
        accumulation_size,
        lambda v: (v >= 1) & (v == np.floor(v)),
        "a whole number >= 1",
    )
    if ema_decay is not None and accumulation_size is not None:
        raise ValueError(
            "goal_phs: give at most one of ema_decay and accumulation_size, got "
            f"ema_decay={ema_decay!r} and accumulation_size={accumulation_size!r}."
        )


ON_DEADLINE = ("brake", "restore_best")
KICK_DIRECTIONS = ("momentum", "random")
_WHOLE = "a whole number >= 1 (or None)"
_NEEDS_RELEASE = "needs release_after or release_energy"


def _validate_options(
    goal: Any,
    deadline: Any,
    on_deadline: str,
    goal_patience: Any,
    goal_decay: Any,
    release_after: Any,
    release_energy: Any,
    max_releases: Any,
    kick_energy: Any,
    kick_direction: str,
    kick_seed: Any,
    track_best_params: Any,
) -> None:
    """Checks the options of issue 6 (deadline, goal adaptation, release, kick)."""
    check = _validation.check

    def require(name: str, value: Any, condition: bool, requirement: str) -> None:
        _validation.require("goal_phs", name, value, condition, requirement)

    for name, value in [
        ("deadline", deadline),
        ("goal_patience", goal_patience),
        ("release_after", release_after),
        ("max_releases", max_releases),
    ]:
        check("goal_phs", name, value, _validation.is_whole_at_least_one, _WHOLE)
    check(
        "goal_phs", "goal_decay", goal_decay, lambda v: (v > 0) & (v < 1), "in (0, 1)"
    )
    check("goal_phs", "release_energy", release_energy, lambda v: v > 0, "> 0")
    check("goal_phs", "kick_energy", kick_energy, lambda v: v > 0, "> 0")
    check(
        "goal_phs",
        "kick_seed",
        kick_seed,
        lambda v: v == np.floor(v),
        "a whole number (or None)",
    )
    _validation.check_choice("goal_phs", "on_deadline", on_deadline, ON_DEADLINE)
    _validation.check_choice(
        "goal_phs", "kick_direction", kick_direction, KICK_DIRECTIONS
    )
    if not isinstance(track_best_params, bool):
        raise ValueError(
            "goal_phs: track_best_params must be a Python bool (with "
            "optax.inject_hyperparams, give it in static_args), got "
            f"track_best_params={track_best_params!r}."
        )
    releasing = release_after is not None or release_energy is not None
    # Each option needs the one that makes it meaningful (None is always fine).
    for name, value, condition, requirement in [
        ("deadline", deadline, goal is not None, "needs a goal (goal is None)"),
        (
            "goal_patience",
            goal_patience,
            goal is not None,
            "needs a goal (goal is None)",
        ),
        ("goal_decay", goal_decay, goal_patience is not None, "needs goal_patience"),
        ("max_releases", max_releases, releasing, _NEEDS_RELEASE),
        ("kick_energy", kick_energy, releasing, _NEEDS_RELEASE),
        (
            "kick_seed",
            kick_seed,
            kick_energy is not None and kick_direction == "random",
            "needs kick_energy and kick_direction='random'",
        ),
    ]:
        require(name, value, value is None or condition, requirement)
    require(
        "on_deadline",
        on_deadline,
        on_deadline == "brake" or deadline is not None,
        "needs a deadline",
    )
    require(
        "kick_direction",
        kick_direction,
        kick_direction == "momentum" or kick_energy is not None,
        "needs kick_energy",
    )


def _squared_norm(tree: optax.Updates) -> jax.Array:
    """``sum |leaf|^2`` over the pytree, in float32."""
    return sum(
        (
            jnp.sum(jnp.square(leaf.astype(jnp.float32)))
            for leaf in jax.tree.leaves(tree)
        ),
        jnp.zeros([], jnp.float32),
    )


def _tree_where(condition: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


def goal_phs(
    learning_rate: ScalarOrSchedule,
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
    """Goal-oriented port-Hamiltonian momentum ("who breaks early, loses").

    Explores with the low friction ``friction`` and, the first time the
    monitored loss has fallen by the fraction ``goal`` below the initial loss,

        monitored_k <= (1 - goal) * initial_loss,

    multiplies the friction once by ``brake_factor`` and keeps it there
    (exploitation). The update of the step whose loss reaches the goal already
    uses the raised friction. The paper's "breaking at 0.65 with factor 49" is
    ``goal=0.65, brake_factor=49``. The goal presumes a loss bounded below by 0,
    such as cross-entropy.
    {dynamics}
    The monitored loss is the ``value`` passed to ``update`` (default, as in
    the paper), or, to brake on a trend rather than on one lucky minibatch,
    its exponential moving average ``ema_k = ema_decay * ema_{{k-1}} + (1 -
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

          goal_k = goal * r ** floor((k - s) / P),

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
      integrator: ``"conformal"`` (default), ``"symplectic"`` or ``"euler"``.
      drag: ``"momentum"`` (default) or ``"velocity"``.
      initial_loss: the reference loss of the goal; by default the first finite
        ``value`` that ``update`` receives.
      ema_decay: if given, brake on the exponential moving average of the loss
        with this decay in [0, 1).
      accumulation_size: if given, brake on the mean loss over windows of this
        many steps.
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
    """
    _validation.check_dynamics(
        "goal_phs", learning_rate, mass, friction, integrator, drag
    )
    _validate_goal(goal, brake_factor, initial_loss, ema_decay, accumulation_size)
    _validation.check_dtype("goal_phs", "momentum_dtype", momentum_dtype)
    _validate_options(
        goal,
        deadline,
        on_deadline,
        goal_patience,
        goal_decay,
        release_after,
        release_energy,
        max_releases,
        kick_energy,
        kick_direction,
        kick_seed,
        track_best_params,
    )
    restore_best = on_deadline == "restore_best"
    keep_best_params = track_best_params or restore_best
    releasing = release_after is not None or release_energy is not None
    random_kicks = kick_energy is not None and kick_direction == "random"

    def init_fn(params: optax.Params) -> GoalPHSState:
        def nan_or(value: Any) -> Any:
            return jnp.nan if value is None else value

        return _pack_goal_phs_state(
            momentum=_zeros_like(params, momentum_dtype),
            count=jnp.zeros([], jnp.int32),
            friction=friction,
            initial_loss=nan_or(initial_loss),
            braked=jnp.zeros([], jnp.bool_),
            brake_step=jnp.full([], -1, jnp.int32),
            monitored_loss=nan_or(None),
            loss_sum=jnp.zeros([], jnp.float32),
            loss_count=jnp.zeros([], jnp.int32),
            goal_in_force=nan_or(goal),
            phase_start=jnp.zeros([], jnp.int32),
            last_brake_step=jnp.full([], -1, jnp.int32),
            releases=jnp.zeros([], jnp.int32),
            best_loss=nan_or(None),
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
        value: jax.Array, is_finite: jax.Array, state: GoalPHSState
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Returns (monitored loss, whether to compare it now, loss_sum, loss_count)."""
        if accumulation_size is not None:
            loss_sum = state.loss_sum + jnp.where(is_finite, value, 0.0)
            loss_count = state.loss_count + is_finite.astype(jnp.int32)
            window_full = loss_count >= jnp.asarray(accumulation_size, jnp.int32)
            monitored = jnp.where(
                window_full, loss_sum / jnp.maximum(loss_count, 1), state.monitored_loss
            )
            return (
                monitored,
                window_full,
                jnp.where(window_full, 0.0, loss_sum),
                jnp.where(window_full, 0, loss_count),
            )
        if ema_decay is not None:
            decay = _f32(ema_decay)
            averaged = jnp.where(
                jnp.isnan(state.monitored_loss),
                value,
                decay * state.monitored_loss + (1.0 - decay) * value,
            )
            monitored = jnp.where(is_finite, averaged, state.monitored_loss)
        else:
            monitored = jnp.where(is_finite, value, state.monitored_loss)
        return monitored, is_finite, state.loss_sum, state.loss_count

    def release_now(state: GoalPHSState) -> jax.Array:
        """Whether update ``state.count`` ends the exploitation phase."""
        if not releasing:
            return jnp.zeros([], jnp.bool_)
        steps_braked = state.count - state.last_brake_step
        ends = jnp.zeros([], jnp.bool_)
        if release_after is not None:
            ends = ends | (steps_braked >= _int32(release_after))
        if release_energy is not None:
            energy = _squared_norm(state.momentum) / (2.0 * _f32(mass))
            if axis_name is not None:
                energy = jax.lax.pmean(energy, axis_name)
            ends = ends | (energy < _f32(release_energy))
        release = state.braked & (steps_braked > 0) & ends
        if max_releases is not None:
            release = release & (state.releases < _int32(max_releases))
        return release

    def kick(
        momentum: optax.Updates, key: jax.Array | None
    ) -> tuple[optax.Updates, jax.Array | None]:
        """The momentum plus a kick of energy kick_energy, and the next key."""
        if random_kicks:
            key, use = jax.random.split(key)
            leaves, treedef = jax.tree.flatten(momentum)
            leaf_keys = jax.random.split(use, len(leaves))
            direction = jax.tree.unflatten(
                treedef,
                [
                    jax.random.normal(k, jnp.shape(leaf), jnp.float32)
                    for k, leaf in zip(leaf_keys, leaves, strict=True)
                ],
            )
        else:
            direction = momentum
        norm = jnp.sqrt(_squared_norm(direction))
        size = jnp.sqrt(2.0 * _f32(mass) * _f32(kick_energy))
        scale = jnp.where(norm > 0, size / jnp.where(norm > 0, norm, 1.0), 0.0)
        kicked = jax.tree.map(
            lambda p, d: (
                p.astype(jnp.promote_types(p.dtype, jnp.float32))
                + scale * d.astype(jnp.float32)
            ).astype(p.dtype),
            momentum,
            direction,
        )
        return kicked, key

    def update_fn(
        updates: optax.Updates,
        state: GoalPHSState,
        params: optax.Params | None = None,
        *,
        value: jax.Array | float | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, GoalPHSState]:
        del extra_args
        if value is None:
            raise TypeError(
                "goal_phs needs the current loss as the keyword `value`: call "
                "tx.update(grads, opt_state, params, value=loss)."
            )
        if keep_best_params and params is None:
            raise TypeError(
                "goal_phs with on_deadline='restore_best' or track_best_params=True "
                "needs the params: call tx.update(grads, opt_state, params, "
                "value=loss)."
            )
        value = _f32(value)
        chex.assert_shape(value, ())
        if axis_name is not None:
            value = jax.lax.pmean(value, axis_name)
        count = state.count
        is_finite = jnp.isfinite(value)
        reference = jnp.where(
            jnp.isnan(state.initial_loss) & is_finite, value, state.initial_loss
        )
        monitored, compare_now, loss_sum, loss_count = monitor(value, is_finite, state)

        # The best point: the params of this update count when its loss is best.
        new_best = (
            compare_now & jnp.isfinite(monitored) & ~(monitored >= state.best_loss)
        )
        best_loss = jnp.where(new_best, monitored, state.best_loss)
        best_params = state.best_params
        if keep_best_params:
            best_params = _tree_where(new_best, params, state.best_params)

        # A release ends exploitation before this update's goal and dynamics.
        release = release_now(state)
        was_braked = state.braked & ~release
        phase_start = jnp.where(release, count, state.phase_start)
        if releasing:
            reference = jnp.where(release, monitored, reference)

        if goal is None:
            goal_in_force = state.goal_in_force
            goal_reached = jnp.zeros([], jnp.bool_)
        else:
            goal_now = _f32(goal)
            if goal_patience is not None:
                decays = (count - phase_start) // _int32(goal_patience)
                goal_now = goal_now * jnp.power(
                    _f32(0.5 if goal_decay is None else goal_decay), decays
                )
            goal_in_force = jnp.where(was_braked, state.goal_in_force, goal_now)
            goal_reached = compare_now & (monitored <= (1.0 - goal_now) * reference)
            if releasing:  # the new reference is not compared with itself
                goal_reached = goal_reached & ~release
        if deadline is None:
            deadline_brake = jnp.zeros([], jnp.bool_)
        else:
            deadline_brake = (
                ~was_braked & ~goal_reached & (count - phase_start >= _int32(deadline))
            )
        braked = was_braked | goal_reached | deadline_brake
        newly_braked = braked & ~was_braked

        momentum = state.momentum
        kick_key = state.kick_key
        if kick_energy is not None:
            kicked, next_key = kick(momentum, kick_key)
            momentum = _tree_where(release, kicked, momentum)
            if random_kicks:
                kick_key = jnp.where(release, next_key, kick_key)

        friction_in_force = _f32(friction) * jnp.where(braked, _f32(brake_factor), 1.0)
        updates, momentum = phs_step(
            updates,
            momentum,
            learning_rate=_learning_rate_at(learning_rate, count),
            mass=_f32(mass),
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
        return updates, _pack_goal_phs_state(
            momentum=momentum,
            count=optax.safe_increment(count),
            friction=friction_in_force,
            initial_loss=reference,
            braked=braked,
            brake_step=jnp.where(
                newly_braked & (state.brake_step < 0), count, state.brake_step
            ),
            monitored_loss=monitored,
            loss_sum=loss_sum,
            loss_count=loss_count,
            goal_in_force=goal_in_force,
            phase_start=phase_start,
            last_brake_step=jnp.where(newly_braked, count, state.last_brake_step),
            releases=state.releases + release.astype(jnp.int32),
            best_loss=best_loss,
            best_params=best_params,
            kick_key=kick_key,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _int32(value: Any) -> jax.Array:
    """An integer option (a Python int or, from inject_hyperparams, an array)."""
    return jnp.asarray(value).astype(jnp.int32)


phs.__doc__ = phs.__doc__.format(dynamics=_DYNAMICS_DOC)
goal_phs.__doc__ = goal_phs.__doc__.format(dynamics=_DYNAMICS_DOC)
