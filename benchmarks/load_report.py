"""The record that ``benchmarks/load.py`` prints: one table row per case, the counts of
inputs, faults and lost results, and the notes that explain the columns.
"""

from __future__ import annotations

import os

from machine import git_commit  # a sibling script: run from benchmarks/


# -- the table ----------------------------------------------------------------------------
def _growth(out: dict) -> str:
    marks = out["marks"]
    if len(marks) < 2:
        return "-"
    a, b = marks[0], marks[-1]
    d = out["trace"]["driver"]
    grow = d[str(b)] - d[str(a)]
    text = f"{grow:+.1f} MB ({1024 * grow / (b - a):.0f} KB/member)"
    w = out["trace"]["workers"]
    if w:
        wg = [y - x for x, y in zip(w[str(a)], w[str(b)])]
        text += f"; workers {', '.join(f'{g:+.1f}' for g in wg)} MB"
    return text


def row(out: dict) -> str:
    name = out["case"]
    if out.get("crashed"):
        return (f"| {name} | | | {out['wall_s']:.1f} | | | | process died "
                f"(rc {out['returncode']}): {out['error']} | |")
    if name.startswith("many"):
        peak = f"{out['peak']:.0f}"
        if out["worker_peaks"]:
            peak += " (workers " + ", ".join(f"{p:.0f}" for p in out["worker_peaks"]) + ")"
        e = out["errors"]
        sanity = (f"r: median {100 * e['r'][0]:.2f} %, max {100 * e['r'][1]:.1f} %; K: median "
                  f"{100 * e['K'][0]:.2f} %, max {100 * e['K'][1]:.1f} %")
        ok = "ok" if e["r"][0] < 0.03 and e["K"][0] < 0.03 else "CHECK"
        order = "in input order" if out["in_order"] else "ORDER WRONG"
        which = (f"= the {out['faults']} injected" if out["failed_as_injected"]
                 else "NOT the injected set")
        outcome = (f"{out['returned']} returned ({order}), {out['succeeded']} fitted "
                   f"({out['usable']} usable), {out['failed']} recorded failures ({which}), "
                   f"**{out['lost']} lost**")
        opts = ", ".join(f"{k}={v!r}" for k, v in out["options"].items())
        sched = "serial" if name == "many_serial" else "Dask, 2 workers"
        return (f"| fit_many ({sched}) | {out['size']} | {opts} | {out['wall_s']:.1f} | "
                f"{out['rss_before']:.0f} | {peak} | {_growth(out)} | {outcome} | "
                f"{ok}: {sanity} |")
    opts = ", ".join(f"{k}={v!r}" for k, v in out["options"].items()) or "defaults"
    what = {"fit_single": "physics, LM", "fit_default": "physics, LM",
            "fit_hybrid": "hybrid (MLP 8x1)", "fit_long": "physics, LM (long)",
            "fit_long_default": "physics (long)"}[name]
    size = f"{out['size']} ({out['observed']:,} points; grid {out['grid']}, {out['layout']})"
    if not out["ok"]:
        return (f"| {name}: {what} | {size} | {opts} | {out['wall_s']:.1f} | "
                f"{out['rss_before']:.0f} | {out['peak']:.0f} | - | **raised** "
                f"{out['error']} | - |")
    tol = 0.2 if name == "fit_hybrid" else 0.02
    worst = max(out["errors"].values())
    sanity = ", ".join(f"{k} {v:.4g} ({100 * out['errors'][k]:.2f} %)"
                       for k, v in out["parameters"].items())
    ok = "ok" if worst < tol else "CHECK"
    method, note = "LM", ""
    if "jacobian" in out:
        rows, cols = out["jacobian"]
        nbytes = rows * cols * 8
        note = f"; dense LM Jacobian {rows:,} x {cols:,} ({nbytes / 2 ** 30:.2f} GiB)"
        if out.get("limit") and nbytes > out["limit"]:
            method = "L-BFGS" if not out["windows"] else "L-BFGS (windows) + LM (polish)"
            note = (f"; LM's dense Jacobian {rows:,} x {cols:,} would take "
                    f"{nbytes / 2 ** 30:.1f} GiB, above the {out['limit'] / 2 ** 30:g} GiB limit")
    elif name == "fit_hybrid":
        method = "L-BFGS"
    outcome = f"{out['status']}, {out['iterations']} {method} iterations, "
    outcome += f"{out['windows']} shooting windows" if out["windows"] else "single shooting"
    outcome += note
    return (f"| {name}: {what} | {size} | {opts} | {out['wall_s']:.1f} | "
            f"{out['rss_before']:.0f} | {out['peak']:.0f} | - | {outcome} | {ok} "
            f"(< {100 * tol:g} %): {sanity} |")


def report(outs: list, args, command: str, started: str, load_before: str) -> str:
    import torch

    import sysid
    lines = [f"# Load benchmark (issue 8, part 5){' - quick' if args.quick else ''}", "",
             f"`{command}`, {started} UTC, commit {git_commit()}, sysid {sysid.__version__}, "
             f"torch {torch.__version__} on 1 thread, {os.cpu_count()} cores, load average "
             f"{load_before} before -> {' / '.join(f'{v:.2f}' for v in os.getloadavg())} "
             f"after (the machine is shared: wall times vary with the other jobs).", "",
             "| case | size | options | wall (s) | RSS before (MB) | peak RSS (MB) | RSS growth "
             "(member n/5 -> n) | outcome | parameters vs truth |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [row(o) for o in outs]
    inputs = sum(o.get("inputs", 1) for o in outs)
    faults = sum(o.get("faults", 0) for o in outs)
    lost = sum(o.get("lost", 0) for o in outs if "lost" in o)
    raised = [o["case"] for o in outs if o.get("crashed") or o.get("ok") is False]
    lines += ["", f"**Counts:** inputs tried {inputs} (fits started: one per single fit, one "
              f"per fit_many member), faults injected {faults} (broken datasets among the "
              f"members), files refused 0 (no file is read), results lost **{lost}**"
              f"{'; single fits that raised: ' + ', '.join(raised) if raised else ''}.", ""]
    lines += notes(outs, args)
    return "\n".join(lines) + "\n"


# measured once with `--case fit_long --long-points 10000` data and options (2026-11-29,
# commit 1671085, load average about 2.5), before Levenberg-Marquardt phases with a dense
# Jacobian above 1 GiB switched to L-BFGS (commit bab32c2): simulating the data took 71 s
LONG_10000 = ("fit 934 s (15.6 min) by Levenberg-Marquardt (a 3.0 GiB Jacobian), peak RSS "
              "7,462 MB, omega0 1.0472, alpha 0.0200, converged")


def notes(outs: list, args) -> list:
    names = {o["case"] for o in outs}
    lines = [
        "Notes:", "",
        "- *RSS before*: the case's process after importing sysid and building the data; "
        "*peak RSS*: `ru_maxrss` of that process (for Dask, also of each worker). Each "
        f"process runs under an address-space limit of {args.memory_limit:g} GiB, so a case "
        "that wants more raises MemoryError instead of swapping.",
        "- *RSS growth* over fit_many: resident memory after member n/5 and after member n "
        "(serial: the process that fits them; Dask: the driver, then each worker). It is "
        "the results kept: the serial collection holds every member's FitResult (about "
        "40-45 KB each for these 30-sample fits), a Dask collection each member's payload "
        "(about 11 KB; *usable* rebuilt every FitResult from it after the measurement). A "
        "loop of the same fits that drops each result grows by less than 0.1 MB over 300 "
        "fits, and tests/test_load.py checks that a second fit_many after dropping the first "
        "reuses its memory.",
    ]
    if "fit_default" in names or "fit_long_default" in names:
        lines.append(
            "- *Default options* (multiple shooting windows of about 5 samples, "
            "Levenberg-Marquardt): the Jacobian is a dense NumPy array with a column per "
            "window start, about 10 bytes x points^2 (sysid/problem/jacobian.py `linearise`), and an "
            "iteration peaks at about four times that (copies for the column selection and "
            "the continuity rows, the normal equations); each step solves the normal "
            "equations densely, cubic in the windows. That sets *fit_default*'s peak memory "
            "and time. On 100 x 1,000 points (*fit_long_default*) it would need 93 GiB: "
            "`sysid.fit` raised numpy's MemoryError after the Adam warm-up (\"Unable to "
            "allocate 74.5 GiB\", found by this benchmark); since commit bab32c2 a phase "
            "whose Jacobian would exceed `sysid.training.levenberg_marquardt.MAX_JACOBIAN_BYTES` (1 GiB) runs L-BFGS "
            "instead, which this row measures.")
    if "fit_long" in names:
        lines.append(
            f"- *fit_long*: single shooting (the Jacobian then has 2 + 2 x 100 columns, "
            f"linear in the points, though still dense) on a lightly damped pendulum (alpha "
            f"= 0.02, so that the record stays informative), `max_steps` raised because the "
            f"step limit counts a whole trajectory. Run here at 100 x {args.long_points:,}: "
            f"above about 3,300 points per trajectory its Jacobian passes the 1 GiB limit "
            f"and the fit runs L-BFGS. 100 x 10,000 (1,000,000 points) was measured before "
            f"that limit: {LONG_10000}, longer than the ~10 minutes this record allows on 2 "
            f"shared cores (`--long-points 10000` reruns it, now by L-BFGS).")
    if args.quick:
        lines.append("- `--quick` skips the default-options fits, fits a 100 x "
                     f"{args.long_points} long record and {args.members} fit_many members.")
    return lines
