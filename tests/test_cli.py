"""The command line: ``sysid demo`` and ``sysid fit SPEC.toml DATA.nc --out DIR``."""

import json

import xarray as xr

import sysid
from sysid.cli import main

SPEC = """
[model]
states = ["x", "y"]
[model.physics]
x = "a*x - b*x*y"
y = "c*x*y - d*y"
[model.parameters]
a = { value = 1.0, positive = true }
b = { value = 1.0, positive = true }
c = { value = 1.0, positive = true }
d = { value = 1.0, positive = true }
[fit]
seed = 0
progress = false
[output]
forecast_horizon = 2.0
"""


def test_cli_fit_runs_a_users_model(tmp_path):
    data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=0)
    data.to_netcdf(tmp_path / "data.nc", engine="h5netcdf")
    (tmp_path / "model.toml").write_text(SPEC)
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / "model.toml"), str(tmp_path / "data.nc"),
                 "--out", str(out)]) == 0
    params = json.loads((out / "parameters.json").read_text())["parameters"]
    assert abs(params["a"] - 1.3) < 0.05 * 1.3
    with xr.open_dataset(out / "imputed.nc", engine="h5netcdf") as imputed:
        assert set(imputed.data_vars) >= {"x", "y"}
    assert (out / "forecast.nc").exists() and (out / "fit.png").stat().st_size > 10_000
    again = sysid.load(out / "result.sysid")
    assert again.parameters == params


def test_cli_refuses_code_in_equations(tmp_path, capsys):
    data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=0)
    data.to_netcdf(tmp_path / "data.nc", engine="h5netcdf")
    (tmp_path / "evil.toml").write_text(
        SPEC.replace('x = "a*x - b*x*y"', "x = \"__import__('os').system('touch pwned')\""))
    code = main(["fit", str(tmp_path / "evil.toml"), str(tmp_path / "data.nc"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "__import__" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_cli_reports_a_bad_option(tmp_path, capsys):
    data = sysid.datasets.simulate("lotka_volterra", noise=0.01, seed=0)
    data.to_netcdf(tmp_path / "data.nc", engine="h5netcdf")
    (tmp_path / "m.toml").write_text(SPEC.replace("seed = 0", "epoch = 3"))
    assert main(["fit", str(tmp_path / "m.toml"), str(tmp_path / "data.nc"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err


def test_cli_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--fast"]) == 0
    text = capsys.readouterr().out
    assert "alpha" in text and "gamma" in text and "discovered equations" in text
    assert (out / "symbolic.tex").read_text().startswith("\\begin{align}")
    for name in ("parameters.json", "equations.txt", "imputed.nc", "forecast.nc", "fit.png",
                 "result.sysid", "symbolic.tex"):
        assert (out / name).exists(), name
    with xr.open_dataset(out / "imputed.nc", engine="h5netcdf") as imputed:
        assert imputed.sizes["time"] == 21 and not imputed["hare"].isnull().any()
    forecast = xr.open_dataset(out / "forecast.nc", engine="h5netcdf").load()
    forecast.close()
    assert float(forecast["time"].min()) > 20.0
