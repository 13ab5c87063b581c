"""The torch OPEN step (lopt.torch) against the JAX one, on the same parameters.

One process. For each agent size (separate actor and critic MLPs of two hidden
layers, as OPEN's PPO), the JAX step (``open_optimizer``'s update and apply, jitted)
and the torch step (``lopt.torch.OPEN.step``, eager, noise from a generator) run on
parameters of the same shapes, alternately in rounds, and the script prints the
median time per step of each and ``ratio_torch_over_jax``.

    python benchmarks/torch_step.py [--optimizer-file F] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

import lopt.torch as lt
from lopt.optim.dormancy import uniform_dormancy
from lopt.optim.files import load_open
from lopt.optim.open_opt import open_optimizer

RELEASED = Path(__file__).resolve().parents[2] / "shared/pretrained/breakout_OPEN.npy"
#: (name, observation size, width, actions): CartPole, MinAtar Breakout, wider.
SIZES = (
    ("cartpole-w64", 4, 64, 2),
    ("breakout-w64", 400, 64, 6),
    ("breakout-w256", 400, 256, 6),
)


def mlp(obs: int, width: int, out: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(obs, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, out),
    )


def flax_tree(module: torch.nn.Sequential) -> dict:
    """The module's weights in lopt's (flax) layout: Dense_i with kernel (in, out)."""
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    as_jax = lambda t: jnp.asarray(t.detach().numpy())  # noqa: E731
    return {
        "params": {
            f"Dense_{i}": dict(bias=as_jax(m.bias), kernel=as_jax(m.weight.T))
            for i, m in enumerate(linears)
        }
    }


def time_calls(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer-file", type=Path, default=RELEASED)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10, help="steps per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta, config = load_open(args.optimizer_file)
    print(
        f"jax {jax.__version__}, torch {torch.__version__} ({args.threads} thread(s)), "
        f"{args.optimizer_file.name} ({config.num_meta_params} meta-parameters)"
    )
    for name, obs, width, actions in SIZES:
        torch.manual_seed(0)
        actor, critic = mlp(obs, width, actions), mlp(obs, width, 1)
        opt = lt.OPEN(lt.actor_critic_groups(actor, critic), args.optimizer_file)
        for p in [*actor.parameters(), *critic.parameters()]:
            p.grad = 0.01 * torch.randn_like(p)
        generator = torch.Generator().manual_seed(0)

        def torch_step(opt=opt, generator=generator):
            opt.step(
                training_prop=0.5, batch_prop=0.0, dormancy=1.0, generator=generator
            )

        params = {"actor": flax_tree(actor), "critic": flax_tree(critic)}
        grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
        tx = open_optimizer(meta, config)

        @jax.jit
        def jax_step(params, state, key):
            updates, state = tx.update(
                grads,
                state,
                params,
                key=key,
                training_prop=0.5,
                batch_prop=0.0,
                dormancy=uniform_dormancy(params),
            )
            return jax.tree.map(jnp.add, params, updates), state

        carry = [params, tx.init(params)]

        def run_jax(carry=carry, jax_step=jax_step):
            carry[:] = jax_step(*carry, jax.random.key(0))
            jax.block_until_ready(carry)

        run_jax(), torch_step()  # compilation and first allocations
        times = {"jax": [], "torch": []}
        for _ in range(args.rounds):
            times["jax"].append(time_calls(run_jax, args.calls))
            times["torch"].append(time_calls(torch_step, args.calls))
        jax_ms = 1e3 * statistics.median(times["jax"])
        torch_ms = 1e3 * statistics.median(times["torch"])
        num = sum(p.numel() for p in [*actor.parameters(), *critic.parameters()])
        print(
            f"{name}: {num:,} parameters: jax {jax_ms:.2f} ms, torch {torch_ms:.2f} "
            f"ms per step, ratio_torch_over_jax={torch_ms / jax_ms:.2f} "
            f"(rounds: jax {np.round(1e3 * np.array(times['jax']), 2).tolist()}, "
            f"torch {np.round(1e3 * np.array(times['torch']), 2).tolist()})"
        )


if __name__ == "__main__":
    main()
