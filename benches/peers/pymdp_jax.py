"""The pymdp 1.x (JAX) side of `make bench-peers`: pymdp 1.0's batched `Agent` on the models of
`models.npz` (written by `ours.py`), float32, one jitted step of the whole batch per call (infer
states, infer policies, sample action, empirical prior), compile excluded, each step waited for
with `block_until_ready`. JAX runs on one CPU core: the process pins itself to one CPU before
importing JAX, and XLA's CPU thread pools get one thread (XLA_FLAGS, set by `run.py`).

Prints one JSON line per model: the medians of several runs, in microseconds per agent-step.
Runs in the separate virtualenv with `inferactively-pymdp` 1.x; it never imports freeagentics_rs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def pin_to_one_cpu() -> int:
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def load_models(path: str) -> list[dict]:
    import numpy as np

    data = np.load(path)
    models = []
    for name in json.loads(str(data["index"])):
        arrays = {k: [data[f"{name}/{k}/{i}"] for i in range(int(data[f"{name}/{k}/n"]))] for k in "ABCD"}
        models.append({"name": name, **arrays, "obs": data[f"{name}/obs"], "policy_lens": data[f"{name}/policy_lens"]})
    return models


def measure(model: dict, policy_len: int, batch: int, runs: int, steps: int) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    from pymdp.agent import Agent

    def f32(arrays):
        return [jnp.asarray(a, jnp.float32) for a in arrays]

    agent = Agent(
        A=f32(model["A"]),
        B=f32(model["B"]),
        C=f32(model["C"]),
        D=f32(model["D"]),
        policy_len=policy_len,
        gamma=8.0,
        alpha=8.0,
        action_selection="stochastic",
        sampling_mode="marginal",
        inference_algo="fpi",
        use_utility=True,
        use_states_info_gain=True,
        batch_size=batch,
    )
    obs = [jnp.full((batch,), int(o), jnp.int32) for o in model["obs"]]

    @eqx.filter_jit
    def step(agent, prior, key):
        qs = agent.infer_states(obs, prior)
        q_pi, _ = agent.infer_policies(qs)
        keys = jr.split(key, batch + 1)
        action = agent.sample_action(q_pi, rng_key=keys[1:])
        return agent.update_empirical_prior(action, qs), keys[0]

    prior, key = list(agent.D), jr.PRNGKey(0)
    start = time.perf_counter()
    prior, key = jax.block_until_ready(step(agent, prior, key))  # compiles
    compile_s = time.perf_counter() - start
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(steps):
            prior, key = jax.block_until_ready(step(agent, prior, key))
        samples.append((time.perf_counter() - start) / steps / batch * 1e6)
    return {
        "policies": int(agent.policies.num_policies),
        "us_per_agent_step": statistics.median(samples),
        "samples": samples,
        "compile_s": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    cpu = pin_to_one_cpu()
    import jax
    import pymdp

    for model in load_models(args.models):
        for policy_len in model["policy_lens"]:
            row = measure(model, int(policy_len), args.batch, args.runs, args.steps)
            row.update(
                model=model["name"],
                policy_len=int(policy_len),
                kind="pymdp 1.0 JAX",
                versions=f"pymdp {getattr(pymdp, '__version__', '1.x')}, jax {jax.__version__}",
                cpu=cpu,
            )
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
