#!/usr/bin/python3
"""An independent reference for the sampled limit (issue 12): the infinite-width
training trajectory of a 1-hidden-layer muP tanh network, T = 5 steps of
full-batch gradient descent on K = 2 inputs, squared loss, by the Z recursion
derived by hand (TP4; primer section 4) and sampled by plain Monte Carlo in
numpy. netsor's `limit --method sampled` on the same network, written with
stdlib/sgd_mlp.tp, must agree within the combined error of the two.

The recursion (muP: a = (-1/2, 1/2), b = 1/2, c = 0; U entries N(0, 1), so
Z^{h_0(xi_j)} are jointly Gaussian with covariance G_ij = xi_i . xi_j, and
Z^v ~ N(0, 1) independent of them):
    x_t(j)   = tanh(h_t(j))
    f_t(j)   = E[V_t x_t(j)],  V_0 = Z^v
    chi_t(i) = (f_t(i) - y_i) / K
    h_{t+1}(j) = h_t(j) - eta sum_i chi_t(i) G_ij V_t tanh'(h_t(i))
    V_{t+1}    = V_t - eta sum_i chi_t(i) x_t(i)
Every expectation is a population mean, so each Monte Carlo replicate runs the
whole recursion on its own samples; the error is 3 standard errors over the
replicates (the same definition netsor uses over its randomizations).

usage: mup1_reference.py NETSOR_BINARY SOURCE_DIR   (exit 0 when they agree)
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

T, K, ETA = 5, 2, 1.0
XI = np.array([[1.0, 0.5, -0.5], [-0.3, 1.0, 0.8]])
Y = np.array([1.0, -0.5])

PROGRAM = f"""
const L = 1
const T = {T}
const K = {K}
const eta = {ETA}
const a[1] = -0.5
const a[2] = 0.5
const b[1] = 0.5
const b[2] = 0.5
const c = 0
def phi(z) = tanh(z)
input xi[1] = [1.0, 0.5, -0.5]
input xi[2] = [-0.3, 1.0, 0.8]
const y[1] = 1.0
const y[2] = -0.5
import "stdlib/sgd_mlp.tp"
for t in 0..T {{
  for j in 1..K {{
    report f_t[t][j] = f[t][j]
  }}
}}
"""


def replicate(rng, n):
    G = XI @ XI.T
    h = np.linalg.cholesky(G) @ rng.standard_normal((K, n))
    V = rng.standard_normal(n)
    f = np.zeros((T + 1, K))
    for t in range(T + 1):
        x = np.tanh(h)
        f[t] = (V * x).mean(axis=1)
        if t == T:
            break
        chi = (f[t] - Y) / K
        dphi = 1 - x * x
        h = h - ETA * (G @ (chi[:, None] * dphi)) * V
        V = V - ETA * (chi @ x)
    return f


def main():
    netsor, src = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(20261124)
    reps = np.array([replicate(rng, 1 << 19) for _ in range(24)])
    ref = reps.mean(axis=0)
    ref_err = 3 * reps.std(axis=0, ddof=1) / np.sqrt(len(reps))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "mup1.tp")
        with open(path, "w") as fh:
            fh.write(PROGRAM)
        r = subprocess.run([netsor, "limit", path, "--json", "--method", "sampled", "--points", "16384"],
                           capture_output=True, text=True, cwd=src)
    if r.returncode != 0:
        print(r.stderr)
        return 1
    q = json.loads(r.stdout)["quantities"]
    bad = 0
    print(f"{'quantity':10} {'netsor':>12} {'± error':>9} {'numpy MC':>12} {'± error':>9} {'|diff|/combined':>16}")
    for t in range(T + 1):
        for j in range(K):
            name = f"f_t[{t}][{j + 1}]"
            v, e = q[name]["value"], q[name]["abs_error"]
            comb = np.hypot(e, ref_err[t, j])
            ratio = abs(v - ref[t, j]) / comb if comb > 0 else 0.0
            bad += ratio > 1
            print(f"{name:10} {v:12.6f} {e:9.1e} {ref[t, j]:12.6f} {ref_err[t, j]:9.1e} {ratio:16.2f}")
    # f_0 is 0 in the limit (v independent of the features): netsor says so exactly.
    print("disagreements:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
