"""Issue 27: sysid's defaults on held-out problems that no benchmark was tuned on.

Each problem of ``benchmarks/heldout.py`` (its textbook model, its data from SciPy, noise
seeds 1000+) is fitted as a new user would, ``sysid.fit(model, data, progress=False)``
(``noise="lognormal"`` only where the description says the error is relative), and
compared with the data's least-squares oracle (the true structure fitted from the truth).
Per problem: the fit returns a result with a successful status, it reaches the noise
level, and every physical parameter is within a tolerance of the oracle's error.

Tolerances, from the measurements in ``benchmarks/results/heldout.md``:

- physics-only models: ``err <= 3 * oracle + 0.1 %``. Over three noise realisations of each
  of the ten problems that sysid fits, the largest ratio was 1.9 (chemostat, K_s 0.65 %
  against 0.34 %; 4.3 where both errors are below 0.05 %); sysid's optimum is the
  oracle's (cost gap below 0.1 half chi-square units in 29 of 30 fits, 19 in the other,
  with the same errors).
- hybrids: ``err <= 3 * oracle + 5 %``. The network can take a few percent of a physical
  term that it overlaps; on the record's realisation the hybrids were off by at most
  4.2 % where the oracle was off by 1.6 %. Not tested here, the record's other noise
  realisations: predator-prey #2 reached 6.1 % (oracle 0.03 %) and two-mass #1 missed the
  data by 4.7x the noise (both reported 'converged').
- misfit (the fit's RMS residual over the true noise level, worst channel) <= 1.5:
  measured 0.9-1.2 on the physics fits at the data's optimum, 1.0-1.3 on the hybrid fits
  that reach the noise; the misses were at 4.7-33.

Problems where sysid misses are marked ``xfail(strict=True)`` with the measured cause. All
tests are slow (one fit and one oracle each, about 6.5 minutes in all on one core, most of
it hybrid_motor's 4-minute fit): ``python -m pytest -m slow tests/test_heldout.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import heldout  # noqa: E402

PHYSICS = (3.0, 1e-3)          # err <= factor * oracle + floor
HYBRID = (3.0, 0.05)
MISFIT = 1.5

XFAIL = {
    "seir": (
        "the never-measured susceptible fraction S starts from the slopes of the prevalence "
        "alone and the fit stays in a wrong basin (S0 = 0.093 where the truth is 0.995): "
        "misfit 11.7x the noise, beta 752 % off (oracle 6.9 %); the status's note says it "
        "misses the data (measured at 9e3b4fc). The closed-population form S = 1 - E - I - R "
        "with shooting='single' reached the oracle at e2d1321 (beta 8.3 %, sigma 13.1 %, "
        "gamma 6.6 %)"),
    "hybrid_chemostat": (
        "network seed 0 ends in a local minimum: misfit 5.5x the noise (its status note says "
        "so), S_in 0.12 % off against the oracle's 0.02 % (9e3b4fc; its start X0 is no longer "
        "below 0, where it was at e2d1321); physics_first=True reached the noise level at "
        "e2d1321 (misfit 1.06, S_in 0.03 % off), as did seed=1"),
}


def _cases():
    for name in heldout.PROBLEMS:
        marks = [pytest.mark.slow]
        if name in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[name]))
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_cases()))
def test_defaults_hold_on_a_held_out_problem(name):
    problem = heldout.PROBLEMS[name]()
    rec = heldout.evaluate(problem)
    assert rec["result"] is not None, f"the fit raised: {rec['detail']}"
    assert rec["success"], f"status {rec['status']}: {rec['detail']}"
    assert rec["misfit"] <= MISFIT, (
        f"the fit misses the data by {rec['misfit']:.2f}x the noise level "
        f"(status {rec['status']}: {rec['detail']})")
    factor, floor = HYBRID if problem.residual is not None else PHYSICS
    for param, err in rec["errors"].items():
        oracle = rec["oracle"]["errors"][param]
        assert err <= factor * oracle + floor, (
            f"{param}: {100 * err:.2f} % off, the oracle {100 * oracle:.2f} % "
            f"(tolerance {100 * (factor * oracle + floor):.2f} %)")
