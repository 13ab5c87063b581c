"""Standard normal noise from Threefry-2x32 written as plain elementwise ops.

jax.random draws through a Threefry primitive that the CPU backend runs as a
five-step loop of separate kernels; for OPEN's per-step actor noise that loop cost
about a fifth of the whole optimizer step. The same 20-round Threefry-2x32 block
cipher (Salmon et al. 2011), written here with jnp operations, fuses into the
kernel that uses the noise. It gives the same bits as ``jax.extend.random.
threefry_2x32`` for the same key pair and counters (a test checks this).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, bits: int) -> jax.Array:
    return (x << np.uint32(bits)) | (x >> np.uint32(32 - bits))


def threefry_2x32(key_pair: jax.Array, x0: jax.Array, x1: jax.Array):
    """The Threefry-2x32 block cipher (20 rounds) on counter words ``(x0, x1)``.

    Args:
      key_pair: shape ``(2,)``, uint32.
      x0, x1: uint32 arrays of one shape.

    Returns:
      Two uint32 arrays of that shape.
    """
    k0, k1 = key_pair[0], key_pair[1]
    keys = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + keys[0], x1 + keys[1]
    for block in range(5):
        for bits in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, bits) ^ x0
        x0 = x0 + keys[(block + 1) % 3]
        x1 = x1 + keys[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def key_pair(key: jax.Array) -> jax.Array:
    """The Threefry key words ``normal`` draws with: shape ``(2,)``, uint32."""
    return jax.random.bits(key, (2,), jnp.uint32)


def normal(key: jax.Array, num: int) -> jax.Array:
    """``num`` independent N(0, 1) draws (float32) determined by ``key``; the draw
    of element ``i`` is Threefry-2x32 of the counter pair ``(i, 0)``."""
    pair = key_pair(key)
    counter = jnp.arange(num, dtype=jnp.uint32)
    # One block per draw, keeping its first word: every element is then computed
    # independently inside one fused loop.
    bits, _ = threefry_2x32(pair, counter, jnp.zeros_like(counter))
    # 23 random mantissa bits give a uniform in [1, 2); map it to (-1, 1).
    floats = jax.lax.bitcast_convert_type(
        (bits >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32
    )
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    uniform = jnp.maximum(lo, (floats - 1.0) * 2.0 + lo)
    return np.float32(np.sqrt(2.0)) * jax.lax.erf_inv(uniform)
