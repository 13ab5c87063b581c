"""Every learned optimizer lopt can meta-train, behind one set of functions.

===============  ==========================================  ===================
name             configuration                               meta-parameters
===============  ==========================================  ===================
``open``         :class:`~lopt.optim.network.OPENConfig`     1,211 (small)
``no-features``  ``OPENConfig.no_features()`` (OPEN §6)      1,098 (small)
``optim4rl``     :class:`~lopt.optim.optim4rl.Optim4RLConfig`  514
===============  ==========================================  ===================

OPEN's ablations (§8.6) are ``open`` with some of :data:`ABLATIONS` removed, and
optionally separate actor and critic meta-parameters (§5.5); each removed RL
feature removes 3 * cell_features input weights (24 for the small network), and
removing the noise removes one output (17).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from lopt.optim import network, optim4rl, tree_paths
from lopt.optim.features import RL_FEATURES
from lopt.optim.network import MetaParams, OPENConfig
from lopt.optim.open_opt import open_optimizer
from lopt.optim.optim4rl import Optim4RLConfig, optim4rl_optimizer
from lopt.optim.optimizer import Optimizer

LearnedConfig = OPENConfig | Optim4RLConfig

#: Names of the learned optimizers, as ``lopt meta-train --learned`` takes them.
LEARNED = ("open", "no-features", "optim4rl")
#: What an OPEN ablation may remove: an RL feature group, or the learned noise.
ABLATIONS = (*RL_FEATURES, "noise")


class LearnedOptimizerError(ValueError):
    """A learned optimizer or ablation that lopt does not have."""


def make_config(
    name: str,
    base: OPENConfig = OPENConfig(),
    *,
    ablate: Sequence[str] = (),
    separate_actor_critic: bool = False,
) -> LearnedConfig:
    """The configuration of the learned optimizer ``name``.

    Args:
      name: one of :data:`LEARNED`.
      base: OPEN's architecture (sizes, cell) for ``open`` and ``no-features``.
      ablate: for ``open``, what to remove: names from :data:`ABLATIONS`.
      separate_actor_critic: for ``open`` and ``no-features``, two meta-parameter
        sets, one for the actor and one for the critic.

    Raises:
      LearnedOptimizerError: an unknown name or ablation, or options that do not
        apply to ``name``.
    """
    if name not in LEARNED:
        raise LearnedOptimizerError(
            f"unknown learned optimizer {name!r}; choose from {', '.join(LEARNED)}"
        )
    unknown = [a for a in ablate if a not in ABLATIONS]
    if unknown:
        raise LearnedOptimizerError(
            f"unknown ablation(s) {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(ABLATIONS)}"
        )
    if ablate and name != "open":
        raise LearnedOptimizerError(
            f"ablations apply to open, not {name} (no-features already has no RL "
            "feature and no noise)"
        )
    if name == "optim4rl":
        if separate_actor_critic:
            raise LearnedOptimizerError(
                "separate actor and critic meta-parameters apply to open and "
                "no-features, not optim4rl"
            )
        return Optim4RLConfig()
    if name == "no-features":
        base = dataclasses.replace(base, features=OPENConfig.no_features().features)
        ablate = ("noise",)
    return dataclasses.replace(
        base,
        features=tuple(g for g in base.features if g not in ablate),
        noise=base.noise and "noise" not in ablate,
        separate_actor_critic=separate_actor_critic,
    )


def zeros_meta_params(config: LearnedConfig) -> MetaParams:
    """All-zero meta-parameters (ES's starting point) of ``config``'s layout."""
    if isinstance(config, Optim4RLConfig):
        return optim4rl.zeros_meta_params(config)
    return network.zeros_meta_params(config)


def unravel_meta_params(flat: Any, config: LearnedConfig) -> MetaParams:
    """The meta-parameter tree of a flat vector (jax pytree order)."""
    if isinstance(config, Optim4RLConfig):
        return optim4rl.unravel_meta_params(flat, config)
    return network.unravel_meta_params(flat, config)


def check_meta_params(meta_params: MetaParams, config: LearnedConfig) -> None:
    """Raises ``ValueError`` if the tree does not have ``config``'s layout."""
    if isinstance(config, Optim4RLConfig):
        optim4rl.check_meta_params(meta_params, config)
    else:
        network.check_meta_params(meta_params, config)


def learned_family(
    meta_params: MetaParams,
    config: LearnedConfig,
    *,
    name: str | None = None,
    track_noise: bool = False,
    noise_mask: Any = tree_paths.actor_mask,
    layer_props: Any = tree_paths.layer_props,
    actor_mask: Any = tree_paths.actor_mask,
    implementation: str | None = None,
) -> Optimizer:
    """The :class:`~lopt.optim.optimizer.Optimizer` of ``config`` (OPEN, an ablation
    of it, No-Features or Optim4RL) with ``meta_params`` as its ``opt_params``.

    Args:
      name: defaults to ``config.variant``.
      track_noise: OPEN keeps its noise magnitude in its state (diagnostics).
      noise_mask: the leaves OPEN's learned noise may touch (a tree or a function
        of the params; default the actor's). Optim4RL has no noise.
      layer_props, actor_mask: OPEN's layer_prop per leaf and, for separate actor
        and critic meta-parameters, which leaves are the actor's.
      implementation: the code of OPEN's step (:mod:`lopt.optim.fused`; None:
        ``LOPT_OPEN_STEP``, else the fused kernel where it covers ``config``).
    """
    name = name or config.variant
    description = {"name": name, "variant": config.variant, **vars(config)}
    if isinstance(config, Optim4RLConfig):

        def build(opt_params: Any, num_steps: int):
            del num_steps  # Optim4RL has no schedule
            return optim4rl_optimizer(opt_params, config)

    else:

        def build(opt_params: Any, num_steps: int):
            del num_steps  # OPEN's schedule comes from training_prop, not a count
            return open_optimizer(
                opt_params,
                config,
                noise_mask=noise_mask,
                layer_props=layer_props,
                actor_mask=actor_mask,
                track_noise=track_noise,
                implementation=implementation,
            )

    return Optimizer(name, build, meta_params, description, learned=True)
