#!/usr/bin/python3
"""Training limits at scale (issue 12): netsor's sampled evaluator beside its
quadrature path and beside a hand-written numpy Monte Carlo of the same limit.

    /usr/bin/python3 bench/limit_bench.py PART [--netsor build/netsor]

Run the parts one at a time (each a few minutes, on a quiet machine):
  train   programs/mup_mlp_train.tp (muP, 2 hidden layers, 2 inputs, T = 3):
          --method quadrature against the sampled path at the smallest M
          (doubling from 4096) that brings every f_t to <= 1e-4 relative error
  big     bench/mup_mlp3_train.tp (3 hidden layers, 4 inputs, T = 10): the
          error reached per M and the time
  grid    time to 1e-3 relative error on f_T (K = 2 inputs) for T = 1..10 and
          L = 1..3, and the fitted exponent of time against T * L
  numpy   L = 1: the same limit by numpy Monte Carlo of the hand-derived Z
          recursion (tests/sampled/mup1_reference.py) to the same error
  linear  a T-step linear iteration with transposes, x[k] = (W + W^T) x[k-1] / 2,
          beside the same T steps without them (x[k] = W x[k-1]), T = 250..2000:
          time and peak memory of `netsor limit`, and the value against the
          semicircle's moment 2^(-T/2) Catalan(T/2) (issue 16)
"""
import argparse, json, math, os, subprocess, sys, tempfile, time
from fractions import Fraction

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XI = [[1.0, 0.5, -0.5], [-0.3, 1.0, 0.8]]
Y = [1.0, -0.5]


def program(L, T, eta=0.5):
    a = [-0.5] + [0.0] * (L - 1) + [0.5]
    lines = [f"const L = {L}", f"const T = {T}", "const K = 2", f"const eta = {eta}", "const c = 0"]
    lines += [f"const a[{l + 1}] = {v}" for l, v in enumerate(a)]
    lines += [f"const b[{l + 1}] = 0.5" for l in range(L + 1)]
    lines += ["def phi(z) = tanh(z)"]
    lines += [f"input xi[{j + 1}] = {XI[j]}" for j in range(2)]
    lines += [f"const y[{j + 1}] = {Y[j]}" for j in range(2)]
    lines += ['import "stdlib/sgd_mlp.tp"', "for j in 1..K {", "  report fT[j] = f[T][j]", "}"]
    return "\n".join(lines) + "\n"


def netsor(args, file):
    t = time.perf_counter()
    r = subprocess.run([ARGS.netsor, "limit", file, "--json"] + args, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t
    if r.returncode:
        sys.exit(r.stderr)
    return json.loads(r.stdout)["quantities"], dt


def worst_rel(q, keys):
    return max(q[k]["abs_error"] / abs(q[k]["value"]) for k in keys if q[k]["value"] != 0)


def smallest_m(file, keys, target, start=4096, stop=1 << 20, budget=400):
    """Doubles M until every key is within target; returns (M, seconds of that run, its result, total seconds)."""
    total, m = 0.0, start
    while True:
        q, dt = netsor(["--method", "sampled", "--points", str(m)], file)
        total += dt
        if worst_rel(q, keys) <= target or m >= stop or total > budget:
            return m, dt, q, total
        m *= 2


def part_train():
    f = "programs/mup_mlp_train.tp"
    qq, tq = netsor(["--method", "quadrature"], f)
    keys = [k for k in qq if k.startswith("f_t") and qq[k]["value"] != 0]
    m, ts, qs, total = smallest_m(f, keys, 1e-4)
    print(f"mup_mlp_train.tp: quadrature {tq:.1f} s (worst f_t rel. error {worst_rel(qq, keys):.1e});"
          f" sampled M = {m} x 16: {ts:.2f} s (worst f_t rel. error {worst_rel(qs, keys):.1e});"
          f" doubling search from 4096 in all {total:.1f} s; ratio quadrature / sampled = {tq / ts:.0f}x")
    for k in sorted(qq):
        a, b = qq[k], qs[k]
        z = abs(a["value"] - b["value"]) / max(a["abs_error"] + b["abs_error"], 1e-300)
        print(f"  {k:12} quadrature {a['value']: .6f} ± {a['abs_error']:.1e}   sampled {b['value']: .6f} ± "
              f"{b['abs_error']:.1e}   |diff| / (sum of errors) = {z:.2f}")


def part_big():
    f = "bench/mup_mlp3_train.tp"
    for m in (4096, 8192, 16384, 32768):
        q, dt = netsor(["--method", "sampled", "--points", str(m)], f)
        fk = [k for k in q if k.startswith("f_t")]
        print(f"mup_mlp3_train.tp M = {m:6} x 16: {dt:6.1f} s; worst rel. error: f_t {worst_rel(q, fk):.1e},"
              f" all reports {worst_rel(q, list(q)):.1e}", flush=True)
        if dt > 100:
            break


def part_grid():
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for L in ARGS.layers:
            for T in (1, 2, 4, 7, 10):
                f = os.path.join(d, f"g{L}_{T}.tp")
                open(f, "w").write(program(L, T))
                m, dt, q, total = smallest_m(f, ["fT[1]", "fT[2]"], 1e-3, start=1024, budget=240)
                err = worst_rel(q, ["fT[1]", "fT[2]"])
                rows.append((L, T, m, dt, err))
                print(f"L = {L} T = {T:2}: M = {m:6} x 16, {dt:6.2f} s, worst rel. error {err:.1e}", flush=True)
    for r in rows:
        print("row", *r)
    x = np.log([L * T for L, T, *_ in rows])
    y = np.log([r[3] for r in rows])
    slope = np.polyfit(x, y, 1)[0]
    print(f"fitted exponent of time to 1e-3 against T * L: {slope:.2f}")


def mc_recursion(rng, n, T, eta=0.5):
    xi = np.array(XI)
    G = xi @ xi.T
    h = np.linalg.cholesky(G) @ rng.standard_normal((2, n))
    V = rng.standard_normal(n)
    for t in range(T + 1):
        x = np.tanh(h)
        f = (V * x).mean(axis=1)
        if t == T:
            return f
        chi = (f - np.array(Y)) / 2
        h = h - eta * (G @ (chi[:, None] * (1 - x * x))) * V
        V = V - eta * (chi @ x)


def part_numpy():
    with tempfile.TemporaryDirectory() as d:
        for T in (1, 4, 10):
            f = os.path.join(d, f"n{T}.tp")
            open(f, "w").write(program(1, T))
            m, dt, q, _ = smallest_m(f, ["fT[1]", "fT[2]"], 1e-3, start=1024)
            # numpy: 16 replicates (3 s.e. over them, as netsor), n doubled until 1e-3.
            n = 1 << 14
            while True:
                rng = np.random.default_rng(T)
                t0 = time.perf_counter()
                reps = np.array([mc_recursion(rng, n, T) for _ in range(16)])
                tn = time.perf_counter() - t0
                err = np.max(3 * reps.std(axis=0, ddof=1) / 4 / np.abs(reps.mean(axis=0)))
                if err <= 1e-3 or n >= 1 << 24:
                    break
                n *= 2
            print(f"L = 1 T = {T:2}: netsor M = {m} x 16 in {dt:.2f} s; numpy MC n = {n} x 16 in {tn:.2f} s"
                  f" (rel. error {err:.1e}); numpy / netsor = {tn / dt:.1f}x", flush=True)


def linear_program(T, transposes):
    step = "(W @ x[k-1] + W.T @ x[k-1]) / 2" if transposes else "W @ x[k-1]"
    return (f"const K = {T}\nmatrix W : gaussian(var=1)\nvector x[0] : gaussian(var=1)\n"
            f"for k in 1..K {{\n  x[k] = {step}\n}}\nreport m = avg(x[0] * x[K])\n")


def limit_time_rss(file):
    """Wall seconds, peak resident MB and the report of one `netsor limit --json`."""
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", ARGS.netsor, "limit", file, "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(r.stderr)
    sec, kb = r.stderr.strip().splitlines()[-1].split()
    return float(sec), int(kb) / 1024, json.loads(r.stdout)["quantities"]["m"]["value"]


def part_linear():
    with tempfile.TemporaryDirectory() as d:
        for T in [250, 500, 1000, 2000]:
            row = []
            for transposes in (True, False):
                f = os.path.join(d, f"lin{T}{transposes}.tp")
                with open(f, "w") as fh:
                    fh.write(linear_program(T, transposes))
                row.append(limit_time_rss(f))
            (t1, m1, v1), (t0, m0, v0) = row
            # (W + W^T)/2 = (Wigner of variance 1) / sqrt 2: moment 2k is Catalan(k) / 2^k.
            exact = float(Fraction(math.comb(T, T // 2), (T // 2 + 1) * 2 ** (T // 2)))
            print(f"T = {T:4}: with transposes {t1:6.2f} s {m1:6.0f} MB (m / exact - 1 = {v1 / exact - 1:.1e});"
                  f" without {t0:5.2f} s {m0:5.0f} MB (m = {v0}); time ratio {t1 / max(t0, 0.01):.1f}x", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["train", "big", "grid", "numpy", "linear"])
    ap.add_argument("--netsor", default=os.path.join(ROOT, "build", "netsor"))
    ap.add_argument("--layers", default=[1, 2, 3], type=lambda s: [int(v) for v in s.split(",")],
                    help="grid: the L to run (e.g. 1,2 then 3, to keep each run short)")
    ARGS = ap.parse_args()
    {"train": part_train, "big": part_big, "grid": part_grid, "numpy": part_numpy, "linear": part_linear}[ARGS.part]()
