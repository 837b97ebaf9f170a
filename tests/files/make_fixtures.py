"""Write the file-compatibility fixtures with the version before the subpackage layout
(commit 30abd27), from a checkout of that commit:

    git worktree add /tmp/old 30abd27
    PYTHONPATH=/tmp/old python tests/files/make_fixtures.py tests/files
"""
import json
import sys

import sympy as sp

import sysid


def main(out):
    data = sysid.datasets.simulate("lotka_volterra", noise=0.02, seed=3, t_end=4.0, dt=0.2)
    x, y = sp.symbols("x y")
    a, c, d = sp.symbols("a c d", positive=True)
    model = sysid.HybridODE(states=[x, y], physics={x: a * x, y: c * x * y - d * y},
                            parameters={a: 1.0, c: 1.0, d: 1.0},
                            residual=sysid.MLP(width=4, depth=1, states=[x]))
    opts = dict(epochs=4, lbfgs_iterations=3, polish_iterations=0, seed=0, progress=False)
    r = sysid.fit(model, data, **opts)
    r.save(f"{out}/result_30abd27.pt")
    data.to_netcdf(f"{out}/data_30abd27.nc")
    # the same fit with a checkpoint written at every step: the file holds the last state
    sysid.fit(model, data, checkpoint=f"{out}/fit_30abd27.ckpt", checkpoint_every=0, **opts)
    imp = r.impute()
    expect = {"parameters": r.parameters, "noise_std": r.noise_std,
              "impute_x": imp["x"].values.ravel()[:: 5].tolist(),
              "impute_y": imp["y"].values.ravel()[:: 5].tolist(),
              "status": r.status.code, "options": opts, "sysid_commit": "30abd27"}
    json.dump(expect, open(f"{out}/expected_30abd27.json", "w"), indent=1)
    print(expect)


if __name__ == "__main__":
    main(sys.argv[1])
