"""lopt.torch: OPEN, its variants and Optim4RL in PyTorch, against the JAX step.

The JAX optimizers (lopt.optim.open_opt, lopt.optim.optim4rl) are themselves tested
against the NumPy reference; here the torch step must give the same update, to
1e-5 relative, on the same parameters, gradients, inputs and noise, over several
steps (so momenta and recurrent carries are compared too).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="lopt.torch needs PyTorch: pip install 'lopt[torch]'"
)

import lopt.torch as lt  # noqa: E402
from lopt.optim import tree_paths  # noqa: E402
from lopt.optim.dormancy import dormancy_tree  # noqa: E402
from lopt.optim.files import load_learned, save_learned  # noqa: E402
from lopt.optim.learned import ABLATIONS, make_config, unravel_meta_params  # noqa: E402
from lopt.optim.network import OPENConfig  # noqa: E402
from lopt.optim.noise import normal  # noqa: E402
from lopt.optim.open_opt import open_optimizer  # noqa: E402
from lopt.optim.optim4rl import Optim4RLConfig, optim4rl_optimizer  # noqa: E402

from tiny import PRETRAINED  # noqa: E402

TOLERANCE = 1e-5
STEPS = 4


def relative_error(got, want) -> float:
    """max |got - want| / max |want| (relative to the whole vector's scale)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


# THE AGENT -----------------------------------------------------------------------
# A Gaussian actor (with log_std, its last layer) and a critic, in jax's leaf order.

SHAPES = {
    "actor": {
        "params": {
            "Dense_0": {"bias": (16,), "kernel": (6, 16)},
            "Dense_1": {"bias": (16,), "kernel": (16, 16)},
            "Dense_2": {"bias": (3,), "kernel": (16, 3)},
            "log_std": (3,),
        }
    },
    "critic": {
        "params": {
            "Dense_0": {"bias": (16,), "kernel": (6, 16)},
            "Dense_1": {"bias": (16,), "kernel": (16, 16)},
            "Dense_2": {"bias": (1,), "kernel": (16, 1)},
        }
    },
}


def _tree_of(fn):
    leaves, treedef = jax.tree.flatten(SHAPES, is_leaf=lambda x: isinstance(x, tuple))
    return jax.tree.unflatten(treedef, [fn(i, s) for i, s in enumerate(leaves)])


def agent_params():
    return _tree_of(lambda i, s: jax.random.normal(jax.random.key(i), s))


def agent_grads(step: int):
    def grad(i, s):
        g = 0.1 * jax.random.normal(jax.random.key(1000 * step + i), s)
        # Exact zeros (a dead unit's gradient): sign 0 and log(1e-13) features.
        return g.at[..., 0].set(0.0) if i % 3 == 0 else g

    return _tree_of(grad)


def agent_dormancy(params, step: int):
    def layer(n, k):
        return jnp.abs(jax.random.normal(jax.random.key(50 * step + k), (n,)))

    acts = {
        net: {
            "params": {
                f"Dense_{i}": layer(SHAPES[net]["params"][f"Dense_{i}"]["bias"][0], k)
                for i in range(3)
            }
        }
        for k, net in enumerate(("actor", "critic"))
    }
    acts["critic"]["params"]["Dense_0"] = (
        acts["critic"]["params"]["Dense_0"].at[:4].set(0.0)
    )  # dead neurons
    return dormancy_tree(params, acts)


def torch_groups(params):
    """Torch parameters in jax's leaf order: the actor's group, then the critic's."""
    leaves = jax.tree.leaves(params)
    props = jax.tree.leaves(tree_paths.layer_props(params))
    actor = jax.tree.leaves(tree_paths.actor_mask(params))
    tensors = [torch.nn.Parameter(torch.tensor(np.asarray(x))) for x in leaves]
    groups = [
        {
            "params": [t for t, a in zip(tensors, actor, strict=True) if a == is_actor],
            "actor": is_actor,
            "layer_props": [
                p for p, a in zip(props, actor, strict=True) if a == is_actor
            ],
        }
        for is_actor in (True, False)
    ]
    return groups, tensors


# RUNNING BOTH --------------------------------------------------------------------


@dataclasses.dataclass
class Parity:
    update_errors: list
    momentum_error: float
    carry_error: float
    params_error: float


def schedule(step):
    return {"training_prop": step / (STEPS - 1), "batch_prop": (step % 4) / 3}


def run_open(path, perturb=None, steps=STEPS) -> Parity:
    """Runs the jax and the torch OPEN from the file ``path`` side by side.

    ``perturb(step, kwargs, tensors, opt)`` may change the torch side's inputs.
    """
    jax_meta, config = load_learned(path)
    params = agent_params()
    tx = open_optimizer(jax_meta, config)
    state = tx.init(params)
    groups, tensors = torch_groups(params)
    opt = lt.OPEN(groups, path)
    num = sum(t.numel() for t in tensors)
    errors = []
    for step in range(steps):
        grads = agent_grads(step)
        dormancy = agent_dormancy(params, step)
        key = jax.random.key(10 + step)
        updates, state = tx.update(
            grads, state, params, key=key, dormancy=dormancy, **schedule(step)
        )
        params = jax.tree.map(jnp.add, params, updates)
        for t, g in zip(tensors, jax.tree.leaves(grads), strict=True):
            t.grad = torch.tensor(np.asarray(g))
        kwargs = {
            "dormancy": {
                t: torch.tensor(np.asarray(d))
                for t, d in zip(tensors, jax.tree.leaves(dormancy), strict=True)
            },
            "noise": torch.tensor(np.asarray(normal(key, num))),
            **schedule(step),
        }
        if perturb is not None:
            perturb(step, kwargs, tensors, opt)
        opt.step(**kwargs)
        errors.append(
            relative_error(opt.last_update, -np.asarray(tree_paths.flatten(updates)))
        )
    states = [opt.state[t] for t in tensors]
    return Parity(
        update_errors=errors,
        momentum_error=relative_error(
            torch.cat([s["momentum"] for s in states]).T, state.momentum
        ),
        carry_error=relative_error(
            torch.cat([s["carry"] for s in states]).T, state.carry
        ),
        params_error=relative_error(
            torch.cat([t.detach().reshape(-1) for t in tensors]),
            tree_paths.flatten(params),
        ),
    )


def _random_file(tmp_path, config, name="opt.npy", scale=0.5):
    flat = scale * jax.random.normal(jax.random.key(3), (config.num_meta_params,))
    return save_learned(tmp_path / name, unravel_meta_params(flat, config), config)


RELEASED = {
    "breakout (small)": PRETRAINED / "breakout_OPEN.npy",
    "multi (large)": PRETRAINED / "multi_OPEN.npy",
}

VARIANTS = {
    "open-small": OPENConfig.small(),
    "open-large": OPENConfig.large(),
    "open-lstm": OPENConfig(cell="lstm"),
    **{f"open-no-{a}": make_config("open", ablate=[a]) for a in ABLATIONS},
    "no-features": make_config("no-features"),
    "open-separate-actor-critic": make_config("open", separate_actor_critic=True),
    "no-features-separate": make_config("no-features", separate_actor_critic=True),
}


def _check(result: Parity) -> None:
    assert max(result.update_errors) < TOLERANCE, result.update_errors
    assert result.momentum_error < TOLERANCE
    assert result.carry_error < TOLERANCE
    assert result.params_error < TOLERANCE


@pytest.mark.parametrize("name", list(RELEASED))
def test_released_optimizers_match_jax(name):
    path = RELEASED[name]
    if not path.exists():
        pytest.skip("../shared/pretrained is not available")
    _check(run_open(path))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_match_jax(tmp_path, name):
    _check(run_open(_random_file(tmp_path, VARIANTS[name])))


# THE PARITY CHECK CAN FAIL -------------------------------------------------------
# Each input, changed on the torch side only, must break parity for full OPEN and
# leave it intact for the ablation that does not read it.


def _shift(name, amount):
    def perturb(step, kwargs, tensors, opt):
        kwargs[name] = kwargs[name] + amount

    return perturb


def _dormancy(step, kwargs, tensors, opt):
    kwargs["dormancy"] = {t: 2.0 * d for t, d in kwargs["dormancy"].items()}


def _layer_prop(step, kwargs, tensors, opt):
    for group in opt.param_groups:
        group["layer_props"] = [1.0 - p for p in group["layer_props"]]


def _noise(step, kwargs, tensors, opt):
    kwargs["noise"] = -kwargs["noise"]


PERTURBATIONS = {
    "training_prop": _shift("training_prop", 0.1),
    "batch_prop": _shift("batch_prop", 0.2),
    "dormancy": _dormancy,
    "layer_prop": _layer_prop,
    "noise": _noise,
}


@pytest.mark.parametrize("feature", list(PERTURBATIONS))
def test_a_changed_input_breaks_parity_unless_ablated(tmp_path, feature):
    full = run_open(_random_file(tmp_path, OPENConfig()), PERTURBATIONS[feature], 2)
    assert max(full.update_errors) > 1e-3
    ablated = make_config("open", ablate=[feature])
    path = _random_file(tmp_path, ablated, "ablated.npy")
    assert max(run_open(path, PERTURBATIONS[feature], 2).update_errors) < TOLERANCE


def test_a_changed_momentum_or_carry_breaks_parity(tmp_path):
    path = _random_file(tmp_path, OPENConfig())

    def momentum(step, kwargs, tensors, opt):
        if step == 1:
            opt.state[tensors[0]]["momentum"] *= 1.01

    def carry(step, kwargs, tensors, opt):
        if step == 1:
            opt.state[tensors[5]]["carry"] += 0.01

    for perturb in (momentum, carry):
        result = run_open(path, perturb, 3)
        assert result.update_errors[0] < TOLERANCE
        assert max(result.update_errors[1:]) > 1e-4


# OPTIM4RL ------------------------------------------------------------------------


@pytest.mark.parametrize("grad_clip", [0.0, 0.05])
def test_optim4rl_matches_jax(tmp_path, grad_clip):
    config = Optim4RLConfig(grad_clip=grad_clip, learning_rate=3e-3)
    path = _random_file(tmp_path, config)
    jax_meta, _ = load_learned(path)
    params = agent_params()
    tx = optim4rl_optimizer(jax_meta, config)
    state = tx.init(params)
    tensors = torch_groups(params)[1]
    opt = lt.learned_optimizer(tensors, path)
    assert isinstance(opt, lt.Optim4RL)
    for step in range(STEPS):
        grads = agent_grads(step)
        updates, state = tx.update(grads, state, params)
        params = jax.tree.map(jnp.add, params, updates)
        for t, g in zip(tensors, jax.tree.leaves(grads), strict=True):
            t.grad = torch.tensor(np.asarray(g))
        opt.step(training_prop=0.5, batch_prop=0.0)  # ignored, as in optax
        want = -np.asarray(tree_paths.flatten(updates))
        assert relative_error(opt.last_update, want) < TOLERANCE
    carry = torch.cat([opt.state[t]["carry"] for t in tensors])
    width = config.cell_features
    assert relative_error(carry[:, :width].T, state.carry[0]) < TOLERANCE
    assert relative_error(carry[:, width:].T, state.carry[1]) < TOLERANCE


# THE OPTIMIZER AS TORCH CODE USES IT ---------------------------------------------


def mlp(inputs, hidden, outputs):
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, outputs),
    )


class GaussianActor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.log_std = torch.nn.Parameter(torch.zeros(2))  # registered first
        self.mean = mlp(3, 8, 2)


def test_layer_props_follow_layers_with_log_std_last():
    seq = mlp(3, 8, 2)
    props = lt.layer_props(seq)
    assert [props[p] for p in seq.parameters()] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    actor = GaussianActor()
    props = lt.layer_props(actor)
    assert props[actor.log_std] == 1.0
    assert [props[p] for p in actor.mean.parameters()] == [
        0,
        0,
        1 / 3,
        1 / 3,
        2 / 3,
        2 / 3,
    ]
    # Without a module, a group's parameter order gives the same layers.
    order = lt.layer_props_from_order(list(seq.parameters()))
    assert order == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


def test_dormancy_recorder_scores_by_hand():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )
    recorder = lt.DormancyRecorder(net)
    x = torch.randn(5, 3)
    net(torch.randn(7, 3))  # an earlier pass is replaced by the next
    out = net(x)
    hidden = torch.relu(net[0](x)).detach().numpy()
    scores = recorder.scores()

    def by_hand(h):
        a = np.abs(h).mean(0) + 1e-11
        return a / np.abs(a).sum() * a.size

    np.testing.assert_allclose(scores[net[0].weight][:, 0], by_hand(hidden), rtol=1e-6)
    np.testing.assert_allclose(scores[net[0].bias], by_hand(hidden), rtol=1e-6)
    np.testing.assert_allclose(
        scores[net[2].bias], by_hand(out.detach().numpy()), rtol=1e-6
    )
    assert scores[net[0].weight].shape == (4, 1)
    recorder.remove()
    net(torch.zeros(2, 3))
    np.testing.assert_allclose(
        recorder.scores()[net[0].bias], by_hand(hidden), rtol=1e-6
    )


def test_torch_modules_give_the_jax_update():
    """A torch actor and critic, their gradients, hook-recorded dormancy and
    module-derived layer_prop give the update jax gives on the same tree."""
    path = RELEASED["breakout (small)"]
    if not path.exists():
        pytest.skip("../shared/pretrained is not available")
    torch.manual_seed(0)
    actor, critic = mlp(5, 8, 3), mlp(5, 8, 1)
    recorder = lt.DormancyRecorder(actor, critic)
    opt = lt.OPEN(lt.actor_critic_groups(actor, critic), path)
    obs = torch.randn(32, 5)
    loss = actor(obs).square().mean() + critic(obs).sin().mean()
    loss.backward()

    def tree(module, value):  # flax layout: kernels (in, out), bias before kernel
        linears = [m for m in module if isinstance(m, torch.nn.Linear)]
        layers = {
            f"Dense_{i}": {"bias": value(m.bias), "kernel": value(m.weight).T}
            for i, m in enumerate(linears)
        }
        return {"params": layers}

    def activations(module):  # by hand: after tanh for hidden layers, raw at the end
        h, acts = obs.detach().numpy(), {}
        for i, k in enumerate((0, 2, 4)):
            h = (
                h @ module[k].weight.detach().numpy().T
                + module[k].bias.detach().numpy()
            )
            if k < 4:
                h = np.tanh(h)
            acts[f"Dense_{i}"] = jnp.asarray(np.abs(h).mean(0))
        return {"params": acts}

    def weights(p):
        return jnp.asarray(p.detach().numpy())

    def gradients(p):
        return jnp.asarray(p.grad.numpy())

    params = {"actor": tree(actor, weights), "critic": tree(critic, weights)}
    grads = {"actor": tree(actor, gradients), "critic": tree(critic, gradients)}
    acts = {"actor": activations(actor), "critic": activations(critic)}
    meta, config = load_learned(path)
    tx = open_optimizer(meta, config)
    key = jax.random.key(3)
    updates, _ = tx.update(
        grads,
        tx.init(params),
        params,
        key=key,
        training_prop=0.3,
        batch_prop=1 / 3,
        dormancy=dormancy_tree(params, acts),
    )
    # The same noise per element: jax's flat order is bias then kernel (in, out).
    num = sum(x.size for x in jax.tree.leaves(params))
    noise = tree_paths.unflatten(normal(key, num), params)
    opt.step(
        training_prop=0.3,
        batch_prop=1 / 3,
        dormancy=recorder.scores(),
        noise=torch.tensor(torch_order(noise)),
    )
    assert relative_error(-opt.last_update, torch_order(updates)) < TOLERANCE


def torch_order(tree) -> np.ndarray:
    """A flax actor-critic tree's elements in torch's order: per layer, the weight
    ``(out, in)`` (the kernel transposed), then the bias."""
    flat = []
    for net in ("actor", "critic"):
        for i in range(3):
            layer = tree[net]["params"][f"Dense_{i}"]
            flat += [np.asarray(layer["kernel"]).T.ravel(), np.asarray(layer["bias"])]
    return np.concatenate(flat)


def test_noise_reaches_the_actor_group_only_and_follows_the_generator(tmp_path):
    path = _random_file(tmp_path, OPENConfig())

    def update(seed):
        groups, tensors = torch_groups(agent_params())
        for t, g in zip(tensors, jax.tree.leaves(agent_grads(0)), strict=True):
            t.grad = torch.tensor(np.asarray(g))
        opt = lt.OPEN(groups, path)
        opt.step(
            training_prop=0.0,
            batch_prop=0.0,
            dormancy=1.0,
            generator=torch.Generator().manual_seed(seed),
        )
        return opt.last_update.numpy(), sum(t.numel() for t in groups[0]["params"])

    (a, n_actor), (b, _), (c, _) = update(0), update(0), update(1)
    np.testing.assert_array_equal(a, b)
    diff = a - c
    assert np.abs(diff[:n_actor]).max() > 1e-5
    # The critic moves by the same amount but for the shared mean shift.
    np.testing.assert_allclose(diff[n_actor:], diff[n_actor], atol=1e-9)


def test_state_dict_round_trip(tmp_path):
    path = _random_file(tmp_path, OPENConfig())
    groups, tensors = torch_groups(agent_params())
    opt = lt.OPEN(groups, path)
    kwargs = {"training_prop": 0.2, "batch_prop": 0.0, "dormancy": 1.0}
    for t, g in zip(tensors, jax.tree.leaves(agent_grads(0)), strict=True):
        t.grad = torch.tensor(np.asarray(g))
    opt.step(generator=torch.Generator().manual_seed(0), **kwargs)
    saved = opt.state_dict()
    groups2, tensors2 = torch_groups(agent_params())
    for t, u in zip(tensors2, tensors, strict=True):
        t.data.copy_(u.data)
        t.grad = u.grad.clone()
    opt2 = lt.OPEN(groups2, path)
    opt2.load_state_dict(saved)
    opt.step(generator=torch.Generator().manual_seed(1), **kwargs)
    opt2.step(generator=torch.Generator().manual_seed(1), **kwargs)
    np.testing.assert_array_equal(opt.last_update.numpy(), opt2.last_update.numpy())


def test_clear_errors(tmp_path):
    o4rl = _random_file(tmp_path, Optim4RLConfig(), "o4rl.npy")
    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="optim4rl optimizer"):
        lt.OPEN(params, o4rl)
    meta, _ = lt.load(_random_file(tmp_path, OPENConfig()))
    with pytest.raises(ValueError, match="need their config"):
        lt.OPEN(params, meta)
    with pytest.raises(ValueError, match="layout"):
        lt.OPEN(params, meta, OPENConfig.large())
    with pytest.warns(UserWarning, match="noise is added nowhere"):
        opt = lt.OPEN(params, meta, OPENConfig())
    params[0].grad = torch.ones(3)
    with pytest.raises(TypeError):
        opt.step(batch_prop=0.0, dormancy=1.0)  # training_prop is required
    with pytest.raises(ValueError, match="noise has shape"):
        opt.step(training_prop=0.0, batch_prop=0.0, dormancy=1.0, noise=torch.ones(4))
    with pytest.raises(ValueError, match="does not broadcast"):
        opt.step(
            training_prop=0.0,
            batch_prop=0.0,
            dormancy={params[0]: torch.ones(2)},
        )
    noise = torch.ones(3, dtype=torch.float64)
    opt.step(training_prop=0.0, batch_prop=0.0, dormancy=1.0, noise=noise)
    assert opt.last_update.dtype == torch.float32


def test_schedule_helpers_match_lopt_rl():
    from lopt.rl import progress

    for it in (0, 7, 8, 31, 32, 100):
        assert lt.training_prop(it, 8, 10) == pytest.approx(
            float(progress.training_prop(it, 8, 10))
        )
        assert lt.batch_prop(it, 4, 2) == pytest.approx(
            float(progress.batch_prop(it, 4, 2))
        )
    # By hand: 4 minibatches x 2 epochs per update, 10 updates.
    assert lt.training_prop(17, 8, 10) == 2 / 9
    assert lt.batch_prop(13, 4, 2) == 1.0


@pytest.mark.heavy
def test_torch_ppo_example_runs_with_a_meta_trained_file(tmp_path):
    """examples/torch_ppo.py as the README runs it, at a tiny budget, on a file
    lopt meta-train wrote."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("gymnasium", reason="the example needs gymnasium")
    from lopt.cli import main

    out = tmp_path / "meta"
    command = "meta-train --algo ppo --envs cartpole --total-timesteps 512 "
    command += "--population 2 --generations 1 --no-progress --out"
    main([*command.split(), str(out)])
    example = Path(__file__).resolve().parents[1] / "examples" / "torch_ppo.py"
    args = ["--optimizer-file", str(out / "optimizer.npy"), "--total-timesteps", "1024"]
    result = subprocess.run(
        [sys.executable, str(example), *args, "--seeds", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("adam: final return") for line in lines), lines
    assert any(line.startswith("learned (") for line in lines), lines
