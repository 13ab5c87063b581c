"""Evolution strategies from evosax, set up as OPEN meta-trains (§4.1).

``open-es`` is OpenAI-ES (Salimans et al. 2017) with antithetic sampling,
centred-rank fitness shaping and Adam (b1 = 0.99) on the mean, with exponential
decay of sigma and of the learning rate. ``ga`` is evosax's SimpleGA: each
generation mutates copies of the best half of the previous one, in the spirit of
population-based training.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import Open_ES, SimpleGA
from evosax.core.fitness_shaping import (
    centered_rank_fitness_shaping_fn,
    identity_fitness_shaping_fn,
)

from lopt.meta.config import ESConfig


def _decay(init: float, rate: float, floor: float) -> optax.Schedule:
    return optax.exponential_decay(
        init, transition_steps=1, decay_rate=rate, end_value=min(floor, init)
    )


def sigma_schedule(es: ESConfig) -> optax.Schedule:
    """Sigma at each generation: ``max(sigma * sigma_decay**g, sigma_limit)``."""
    return _decay(es.sigma, es.sigma_decay, es.sigma_limit)


def lr_schedule(es: ESConfig) -> optax.Schedule:
    """Adam's learning rate on the mean at generation g:
    ``max(lr * lr_decay**g, lr_limit)``, times ``min(1, (g + 1) / (lr_warmup + 1))``
    during the warm-up."""
    decay = _decay(es.lr, es.lr_decay, es.lr_limit)
    if es.lr_warmup == 0:
        return decay
    ramp = es.lr_warmup + 1
    return lambda g: decay(g) * jnp.minimum(1.0, (g + 1) / ramp)


def make_strategy(es: ESConfig, solution: Any, shaped_outside: bool = False):
    """The evosax algorithm for ``es``; ``solution`` is a template pytree.

    With ``shaped_outside`` (pairwise fitness, OPEN §4.3) OpenAI-ES applies the
    identity instead of centred ranks.
    """
    sigma = sigma_schedule(es)
    if es.strategy == "open-es":
        return Open_ES(
            population_size=es.population_size,
            solution=solution,
            use_antithetic_sampling=True,
            optimizer=optax.adam(lr_schedule(es), b1=0.99),
            std_schedule=sigma,
            fitness_shaping_fn=identity_fitness_shaping_fn
            if shaped_outside
            else centered_rank_fitness_shaping_fn,
        )
    return SimpleGA(
        population_size=es.population_size, solution=solution, std_schedule=sigma
    )


def init_state(strategy, key: jax.Array, mean: Any):
    """The strategy's state, centred on ``mean`` (a solution pytree).

    The GA starts from a population of copies of ``mean`` with equal fitness, so
    its first generation is mutated copies of ``mean``.
    """
    params = strategy.default_params
    if isinstance(strategy, Open_ES):
        return strategy.init(key, mean, params)
    population = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (strategy.population_size, *x.shape)), mean
    )
    return strategy.init(key, population, jnp.zeros(strategy.population_size), params)


def current_solution(strategy, state) -> jax.Array:
    """The flat solution to evaluate and save: the ES mean, or the GA's best
    member of the last generation."""
    if isinstance(strategy, Open_ES):
        return state.mean
    return state.population[jnp.argmin(state.fitness)]
