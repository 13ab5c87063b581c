"""PPO on CartPole in PyTorch, one file in CleanRL's style, trained with a learned
optimizer from a file (lopt.torch.OPEN) and with Adam; prints both final returns.

    pip install -e ".[torch]"
    lopt meta-train --algo ppo --envs cartpole --total-timesteps 20000 --out runs/meta
    python examples/torch_ppo.py --optimizer-file runs/meta/optimizer.npy

The settings are lopt's CartPole preset (4 environments x 128 steps, 4 epochs of 4
minibatches, separate actor and critic of two tanh layers of 64, Adam 2.5e-3
annealed), so a file meta-trained by ``lopt meta-train --envs cartpole`` runs here as
it was trained, at the same horizon: OPEN's training_prop is the fraction of the run
done, so keep --total-timesteps at the meta-training run's (its card says which).
The final return is lopt's: the return of each environment's last finished
episode at the end of training, averaged over the environments.
"""

from __future__ import annotations

import dataclasses
import time

import gymnasium as gym
import numpy as np
import torch
import tyro
from torch import nn
from torch.distributions import Categorical

import lopt.torch as lt
from lopt.optim.card import horizon_mismatch, read_card


@dataclasses.dataclass
class Args:
    optimizer_file: str = "runs/meta/optimizer.npy"
    """a learned optimizer (OPEN, an ablation, No-Features or Optim4RL), e.g. the
    optimizer.npy that lopt meta-train writes"""
    optimizers: tuple[str, ...] = ("adam", "learned")
    """which to train with: adam and/or learned (the file's)"""
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    env_id: str = "CartPole-v1"
    total_timesteps: int = 20_000
    """environment steps per run, summed over the environments"""
    num_envs: int = 4
    num_steps: int = 128
    """rollout length per environment and update"""
    update_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    """global-norm clip of the actor's and of the critic's gradients, separately"""
    hidden_size: int = 64
    learning_rate: float = 2.5e-3
    """Adam's learning rate (annealed linearly to 0); a learned optimizer has none"""
    threads: int = 1
    """torch threads (the networks are small: one thread is fastest)"""


def layer_init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(obs_size: int, hidden: int, out: int, out_gain: float) -> nn.Sequential:
    # Activations as modules, so lt.DormancyRecorder reads the hidden layers' outputs
    # after the tanh (OPEN §2.3).
    return nn.Sequential(
        layer_init(nn.Linear(obs_size, hidden), np.sqrt(2)),
        nn.Tanh(),
        layer_init(nn.Linear(hidden, hidden), np.sqrt(2)),
        nn.Tanh(),
        layer_init(nn.Linear(hidden, out), out_gain),
    )


def train(args: Args, optimizer: str, seed: int) -> float:
    """One PPO run; returns its final return."""
    # TRY NOT TO MODIFY: seeding
    torch.manual_seed(seed)
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(args.env_id) for _ in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs_size = envs.single_observation_space.shape[0]
    actor = mlp(obs_size, args.hidden_size, envs.single_action_space.n, 0.01)
    critic = mlp(obs_size, args.hidden_size, 1, 1.0)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    num_updates = args.total_timesteps // batch_size
    steps_per_update = args.update_epochs * args.num_minibatches

    # OPTIMIZER: the learned one reads the schedule, dormancy and a noise generator
    params = [*actor.parameters(), *critic.parameters()]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=args.learning_rate, eps=1e-8)
    else:
        groups = lt.actor_critic_groups(actor, critic)
        opt = lt.learned_optimizer(groups, args.optimizer_file)
        recorder = lt.DormancyRecorder(actor, critic)
        generator = torch.Generator().manual_seed(seed)

    # STORAGE
    obs_buf = torch.zeros(args.num_steps, args.num_envs, obs_size)
    actions = torch.zeros(args.num_steps, args.num_envs, dtype=torch.long)
    logprobs = torch.zeros(args.num_steps, args.num_envs)
    rewards = torch.zeros(args.num_steps, args.num_envs)
    dones = torch.zeros(args.num_steps, args.num_envs)
    values = torch.zeros(args.num_steps, args.num_envs)

    obs, _ = envs.reset(seed=seed)
    obs = torch.tensor(obs, dtype=torch.float32)
    running = np.zeros(args.num_envs)
    last_return = np.zeros(args.num_envs)  # 0 until an episode ends, as in lopt
    iteration = 0
    for update in range(num_updates):
        if optimizer == "adam":
            for group in opt.param_groups:
                group["lr"] = args.learning_rate * (1.0 - update / num_updates)

        # COLLECT TRAJECTORIES
        for step in range(args.num_steps):
            with torch.no_grad():
                dist = Categorical(logits=actor(obs))
                action = dist.sample()
                values[step] = critic(obs)[:, 0]
            obs_buf[step], actions[step] = obs, action
            logprobs[step] = dist.log_prob(action)
            next_obs, reward, terminated, truncated, _ = envs.step(action.numpy())
            done = np.logical_or(terminated, truncated)
            running += reward
            last_return = np.where(done, running, last_return)
            running = np.where(done, 0.0, running)
            rewards[step] = torch.tensor(reward, dtype=torch.float32)
            dones[step] = torch.tensor(done, dtype=torch.float32)
            obs = torch.tensor(next_obs, dtype=torch.float32)

        # CALCULATE ADVANTAGE (GAE; no bootstrap across a finished episode)
        with torch.no_grad():
            next_value = critic(obs)[:, 0]
            advantages = torch.zeros_like(rewards)
            gae = torch.zeros(args.num_envs)
            for t in reversed(range(args.num_steps)):
                following = next_value if t == args.num_steps - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * following * (1 - dones[t]) - values[t]
                gae = delta + args.gamma * args.gae_lambda * (1 - dones[t]) * gae
                advantages[t] = gae
            returns = advantages + values

        b_obs = obs_buf.reshape(batch_size, obs_size)
        b_actions, b_logprobs = actions.reshape(-1), logprobs.reshape(-1)
        b_adv, b_returns = advantages.reshape(-1), returns.reshape(-1)
        b_values = values.reshape(-1)

        # UPDATE NETWORKS: one optimizer step per minibatch
        for _ in range(args.update_epochs):
            perm = torch.randperm(batch_size)
            for start in range(0, batch_size, minibatch_size):
                mb = perm[start : start + minibatch_size]
                dist = Categorical(logits=actor(b_obs[mb]))
                value = critic(b_obs[mb])[:, 0]
                ratio = torch.exp(dist.log_prob(b_actions[mb]) - b_logprobs[mb])
                adv = b_adv[mb]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = -torch.min(
                    ratio * adv,
                    torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef) * adv,
                ).mean()
                v_clipped = b_values[mb] + torch.clamp(
                    value - b_values[mb], -args.clip_coef, args.clip_coef
                )
                v_loss = (
                    0.5
                    * torch.max(
                        (value - b_returns[mb]) ** 2, (v_clipped - b_returns[mb]) ** 2
                    ).mean()
                )
                loss = (
                    pg_loss
                    + args.vf_coef * v_loss
                    - args.ent_coef * dist.entropy().mean()
                )

                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(actor.parameters(), args.max_grad_norm)
                nn.utils.clip_grad_norm_(critic.parameters(), args.max_grad_norm)
                if optimizer == "adam":
                    opt.step()
                else:
                    opt.step(
                        training_prop=lt.training_prop(
                            iteration, steps_per_update, num_updates
                        ),
                        batch_prop=lt.batch_prop(
                            iteration, args.num_minibatches, args.update_epochs
                        ),
                        dormancy=recorder.scores(),  # this minibatch's forward pass
                        generator=generator,
                    )
                iteration += 1
    envs.close()
    return float(last_return.mean())


def main(args: Args) -> None:
    unknown = set(args.optimizers) - {"adam", "learned"}
    if unknown:
        raise SystemExit(f"unknown optimizer(s) {sorted(unknown)}; use adam, learned")
    torch.set_num_threads(args.threads)
    batch = args.num_envs * args.num_steps
    steps = (args.total_timesteps // batch) * args.update_epochs * args.num_minibatches
    if "learned" in args.optimizers:
        card = read_card(args.optimizer_file)
        warning = horizon_mismatch(card, steps, name=args.optimizer_file)
        if warning:
            print(f"warning: {warning}")
    frames = (args.total_timesteps // batch) * batch
    print(f"{args.env_id}: {frames:,} frames x {len(args.seeds)} seeds per optimizer")
    for optimizer in args.optimizers:
        start = time.perf_counter()
        finals = [train(args, optimizer, seed) for seed in args.seeds]
        wall = time.perf_counter() - start
        name = "adam" if optimizer == "adam" else f"learned ({args.optimizer_file})"
        stderr = np.std(finals, ddof=1) / np.sqrt(len(finals)) if len(finals) > 1 else 0
        print(
            f"{name}: final return {np.mean(finals):.1f} +- {stderr:.1f} "
            f"(per seed {', '.join(f'{r:.1f}' for r in finals)}; {wall:.0f} s)"
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
