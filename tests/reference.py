"""A plain NumPy OPEN, written from OPEN_SPEC sections 2.3-2.7 with explicit loops.

It reads the meta-parameters straight from a flat vector with the offset tables of
section 2.7, so agreement with lopt pins the parameter layout as well as the maths.
Slow and independent of lopt on purpose: the tests compare lopt against it.
"""

from __future__ import annotations

import numpy as np

DECAYS = np.array([0.1, 0.5, 0.9, 0.99, 0.999, 0.9999])


def layout(gru: int, hidden: int) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Offsets and shapes of every leaf in the flat vector (OPEN_SPEC 2.7)."""
    g, h = gru, hidden
    order = [
        ("gru.hn.bias", (g,)),
        ("gru.hn.kernel", (g, g)),
        ("gru.hr.kernel", (g, g)),
        ("gru.hz.kernel", (g, g)),
        ("gru.in.bias", (g,)),
        ("gru.in.kernel", (19, g)),
        ("gru.ir.bias", (g,)),
        ("gru.ir.kernel", (19, g)),
        ("gru.iz.bias", (g,)),
        ("gru.iz.kernel", (19, g)),
        ("l0.bias", (h,)),
        ("l0.kernel", (g, h)),
        ("ln1.bias", (h,)),
        ("ln1.scale", (h,)),
        ("l3.bias", (h,)),
        ("l3.kernel", (h, h)),
        ("ln4.bias", (h,)),
        ("ln4.scale", (h,)),
        ("l6.bias", (3,)),
        ("l6.kernel", (h, 3)),
    ]
    out, offset = {}, 0
    for name, shape in order:
        out[name] = (offset, shape)
        offset += int(np.prod(shape))
    out["total"] = (offset, ())
    return out


def unpack(flat: np.ndarray, gru: int, hidden: int) -> dict[str, np.ndarray]:
    lay = layout(gru, hidden)
    assert flat.size == lay["total"][0], (flat.size, lay["total"][0])
    return {
        name: flat[o : o + int(np.prod(s))].reshape(s)
        for name, (o, s) in lay.items()
        if name != "total"
    }


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean()
    var = max(0.0, (x * x).mean() - mean * mean)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def network(w: dict, carry: np.ndarray, x: np.ndarray):
    """One parameter: carry (G,), x (19,) -> new carry, (m, e, delta)."""
    r = sigmoid(x @ w["gru.ir.kernel"] + w["gru.ir.bias"] + carry @ w["gru.hr.kernel"])
    z = sigmoid(x @ w["gru.iz.kernel"] + w["gru.iz.bias"] + carry @ w["gru.hz.kernel"])
    n = np.tanh(
        x @ w["gru.in.kernel"]
        + w["gru.in.bias"]
        + r * (carry @ w["gru.hn.kernel"] + w["gru.hn.bias"])
    )
    h = (1 - z) * n + z * carry
    y = np.maximum(
        0, layer_norm(h @ w["l0.kernel"] + w["l0.bias"], w["ln1.scale"], w["ln1.bias"])
    )
    y = np.maximum(
        0, layer_norm(y @ w["l3.kernel"] + w["l3.bias"], w["ln4.scale"], w["ln4.bias"])
    )
    return h, y @ w["l6.kernel"] + w["l6.bias"]


def features(p, g, m, tp, lp, bp, d):
    """19 features of every element of one tensor (flattened row-major).

    p, g: (n,), m: (n, 6) momenta after this step, lp scalar, d (n,).
    """
    raw = np.concatenate(
        [
            p[:, None],
            np.sign(m),
            np.log(np.abs(m) + 1e-13),
            np.sign(g)[:, None],
            np.log(np.abs(g) + 1e-13)[:, None],
        ],
        axis=1,
    )
    raw = raw / np.sqrt(1e-5 + (raw**2).mean(axis=0))
    n = p.size
    extra = np.stack([np.full(n, tp), np.full(n, lp), np.full(n, bp), d], axis=1)
    return np.concatenate([raw, extra], axis=1)


def open_step(flat, gru, hidden, tensors, carries, momenta, tp, bp):
    """One OPEN step over a list of tensors.

    tensors: list of dicts with p, g (any shape), lp (float), d (broadcastable to
    p), actor (bool), eps (N(0,1) noise of p's shape). carries: list of (n, G),
    momenta: list of (n, 6). Returns (updates as a list of arrays shaped like p,
    new carries, new momenta, deterministic parts, noise parts).
    """
    w = unpack(np.asarray(flat, np.float64), gru, hidden)
    dets, noises, new_c, new_m = [], [], [], []
    for t, c, m in zip(tensors, carries, momenta, strict=True):
        p, g = t["p"].ravel(), t["g"].ravel()
        m = DECAYS * m + (1 - DECAYS) * g[:, None]
        d = np.broadcast_to(t["d"], t["p"].shape).ravel()
        x = features(p, g, m, tp, t["lp"], bp, d)
        c2 = np.zeros_like(c)
        out = np.zeros((p.size, 3))
        for i in range(p.size):
            c2[i], out[i] = network(w, c[i], x[i])
        det = 1e-3 * out[:, 0] * np.exp(1e-3 * out[:, 1])
        noise = 1e-3 * out[:, 2] * t["eps"].ravel() if t["actor"] else np.zeros(p.size)
        dets.append(det)
        noises.append(noise)
        new_c.append(c2)
        new_m.append(m)
    total = np.concatenate(dets) + np.concatenate(noises)
    mean = total.mean()
    updates = [
        -(d + n - mean).reshape(t["p"].shape)
        for d, n, t in zip(dets, noises, tensors, strict=True)
    ]
    return updates, new_c, new_m, dets, noises
