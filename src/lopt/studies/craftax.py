"""craftax: zero-shot transfer of the released gridworld optimizer to
Craftax-Classic (OPEN §5.4), against Adam with the gridworld's settings carried
over ("Adam (0-shot)") and Adam with settings tuned for Craftax ("Adam (tuned)":
the Craftax paper's PPO, a 3 x 512 agent, lr 2e-4). The paper: OPEN beats Adam
(0-shot) and is comparable to the tuned Adam.

Needs the ``craftax`` extra (``pip install 'lopt[craftax]'``); without it the
study writes a report whose claims are marked not run. OPEN and Adam (0-shot) run
the gridworld's PPO (preset ``zero-shot``), Adam (tuned) the Craftax PPO
(preset ``default``); the paper's own Craftax values were not retrievable.

Scales:

- ``paper``: 1e9 frames with 1024 environments, 32 seeds.
- ``cpu``: the ``small-zero-shot`` and ``small`` presets (64 environments, 1e6
  frames), 4 seeds: about 70 minutes on 2 idle CPU cores (estimated from 36
  measured with 2 seeds: 12 for OPEN and Adam zero-shot, 24 for the tuned 3 x 512
  agent; README Studies). With 2 a side, an interval of P(OPEN > Adam) leaves
  0.5 out only when every seed of one side beats every seed of the other (2
  seeds gave P 0.75 [0, 1] against Adam 0-shot).
- ``smoke``: two updates of tiny runs: seconds (with craftax installed).
"""

from __future__ import annotations

from lopt.studies import claims as c
from lopt.studies import common

NAME = "craftax"
ENV = "craftax/classic"
SEEDS = {"smoke": 2, "cpu": 4, "paper": 32}
PRESETS = {
    "smoke": ("small-zero-shot", "small"),
    "cpu": ("small-zero-shot", "small"),
    "paper": ("zero-shot", "default"),
}
LABELS = ("OPEN", "Adam (0-shot)", "Adam (tuned)")
CLAIMS = (
    ("OPEN (zero-shot) beats Adam (0-shot) on Craftax-Classic", "Adam (0-shot)"),
    ("OPEN (zero-shot) is on par with Adam tuned on Craftax-Classic", "Adam (tuned)"),
)


def plan(options: common.Options) -> common.Plan:
    options.pick(("craftax-classic",))
    plan = common.Plan(NAME, options, [], [])
    why = common.missing_suite(ENV)
    if why:
        plan.notes.append(f"Craftax-Classic skipped: {why}.")
        return plan
    scale = options.scale
    zero_shot, tuned = PRESETS[scale]
    overrides = common.SMOKE if scale == "smoke" else ()
    seeds = options.eval_seeds(SEEDS[scale])
    adam_tuned = options.tuned_file(ENV, "adam", "ppo", tuned)
    plan.jobs += [
        common.EvalJob(
            "zero-shot",
            ENV,
            (
                ("OPEN", f"open:{options.released('gridworld')}"),
                ("Adam (0-shot)", "adam"),
            ),
            seeds,
            preset=zero_shot,
            overrides=overrides,
        ),
        common.EvalJob(
            "tuned",
            ENV,
            (("Adam (tuned)", f"tuned:{adam_tuned}" if adam_tuned else "adam"),),
            seeds,
            preset=tuned,
            overrides=overrides,
        ),
    ]
    plan.parts.append(
        common.Part(
            "craftax",
            "Craftax-Classic",
            ("zero-shot", "tuned"),
            LABELS,
            "Adam (0-shot)",
        )
    )
    plan.notes.append(
        f"OPEN and Adam (0-shot) run the {zero_shot} preset (the gridworld's PPO), "
        f"Adam (tuned) the {tuned} preset (the Craftax paper's PPO and Adam)."
    )
    return plan


def claims(plan: common.Plan, results: common.Results) -> list[c.Claim]:
    if "craftax" not in results.parts:
        why = next((n for n in plan.notes if "skipped" in n), "not planned")
        return [c.not_run(text, "§5.4", "better", why) for text, _ in CLAIMS]
    summary = results.parts["craftax"]
    reps, seed = plan.options.reps, plan.options.seed
    return [
        c.compare(summary, "OPEN", other, text, "§5.4", par=par, reps=reps, seed=seed)
        for (text, other), par in zip(CLAIMS, (False, True), strict=True)
    ]
