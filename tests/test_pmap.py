"""goal_phs(axis_name=...) under jax.pmap: every replica brakes on the mean loss.

Runs in a child process so that XLA can be given four host (CPU) devices
before JAX is imported; the child prints its results as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

N_DEVICES = 4
GOAL = 0.8

CHILD = textwrap.dedent(
    """
    import json
    import sys

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import phs_optax

    N, GOAL = int(sys.argv[1]), float(sys.argv[2])
    HYPER = dict(learning_rate=0.1, mass=1.0, friction=0.1, goal=GOAL,
                 brake_factor=20.0)
    N_STEPS = 20
    assert jax.local_device_count() == N, jax.devices()


    def base_loss(params):
        return jnp.sum(jnp.square(params))


    def local_loss(params, replica):
        # Replica i sees (1 + 0.5 i) * base + i: the offsets lift the mean loss
        # off zero, so the mean falls by the goal later than replica 0's loss.
        return (1.0 + 0.5 * replica) * base_loss(params) + replica


    tx = phs_optax.goal_phs(**HYPER, axis_name="i")


    def step(params, state):
        replica = jax.lax.axis_index("i").astype(jnp.float32)
        loss, grads = jax.value_and_grad(local_loss)(params, replica)
        grads = jax.lax.pmean(grads, "i")  # the caller's job, as usual
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss


    p_step = jax.pmap(step, axis_name="i")
    params0 = jnp.array([2.0, -1.0, 0.5], jnp.float32)
    params = jnp.stack([params0] * N)
    state = jax.pmap(tx.init)(params)
    braked_history, local_losses = [], []
    for _ in range(N_STEPS):
        params, state, loss = p_step(params, state)
        braked_history.append(np.asarray(state.braked).tolist())
        local_losses.append(np.asarray(loss).tolist())

    print(json.dumps({
        "brake_step": np.asarray(state.brake_step).tolist(),
        "braked": np.asarray(state.braked).tolist(),
        "braked_history": braked_history,
        "friction": np.asarray(state.friction).tolist(),
        "initial_loss": np.asarray(state.initial_loss).tolist(),
        "local_losses": local_losses,
        "params_spread": float(np.max(np.ptp(np.asarray(params), axis=0))),
    }))
    """
)


@pytest.fixture(scope="module")
def pmap_result(tmp_path_factory):
    script = tmp_path_factory.mktemp("pmap") / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={N_DEVICES}"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    child = subprocess.run(
        [sys.executable, str(script), str(N_DEVICES), str(GOAL)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_all_replicas_brake_at_the_same_step(pmap_result):
    assert pmap_result["braked"] == [True] * N_DEVICES
    assert len(set(pmap_result["brake_step"])) == 1
    for braked_now in pmap_result["braked_history"]:
        assert len(set(braked_now)) == 1


def first_step_meeting_goal(losses):
    """The first step whose loss is at most (1 - GOAL) times the first loss."""
    losses = np.asarray(losses, np.float64)
    hits = np.flatnonzero(losses <= (1.0 - GOAL) * losses[0])
    return int(hits[0]) if hits.size else -1


def test_brake_step_is_the_one_the_mean_loss_dictates(pmap_result):
    losses = np.asarray(pmap_result["local_losses"])  # (steps, replicas)
    mean_step = first_step_meeting_goal(losses.mean(axis=1))
    assert mean_step > 0
    assert pmap_result["brake_step"] == [mean_step] * N_DEVICES


def test_local_losses_alone_would_have_braked_at_other_steps(pmap_result):
    losses = np.asarray(pmap_result["local_losses"])
    mean_step = first_step_meeting_goal(losses.mean(axis=1))
    # Replica 0 met the goal on its own loss before the mean did ...
    assert first_step_meeting_goal(losses[: mean_step + 1, 0]) < mean_step
    # ... replica 3 had not met it yet when the mean did.
    assert first_step_meeting_goal(losses[: mean_step + 1, -1]) == -1


def test_every_replica_takes_the_mean_first_loss_as_initial_loss(pmap_result):
    expected = float(np.mean(pmap_result["local_losses"][0]))
    assert pmap_result["initial_loss"] == pytest.approx([expected] * N_DEVICES)


def test_params_and_friction_stay_identical_across_replicas(pmap_result):
    assert pmap_result["params_spread"] == 0.0
    assert len(set(pmap_result["friction"])) == 1
