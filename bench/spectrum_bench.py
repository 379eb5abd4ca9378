#!/usr/bin/python3
"""netsor spectrum's dense path against numpy, side by side: the eigenvalues of
J J^T for the depth-L tanh network of programs/spectra/tanh_jacobian.tp.

    /usr/bin/python3 bench/spectrum_bench.py [--netsor build/netsor] [--width 4096] [--depth 4] [--threads 1]

netsor's time is the whole command: start, parse, run the program, form J J^T
(a Gram matrix through BLAS) and diagonalize it (LAPACK dsyevd). numpy
(Debian python3-numpy, OpenBLAS) forms the same kind of matrix and diagonalizes
it with numpy.linalg.eigvalsh; both its total and eigvalsh alone are shown. Both get the same number of BLAS
threads (OPENBLAS_NUM_THREADS). The spectra come from different random
matrices, so only their first moments are compared.
"""
import argparse, json, os, subprocess, sys, time

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--netsor", default=os.path.join(os.path.dirname(__file__), "..", "build", "netsor"))
ARGS.add_argument("--width", type=int, default=4096)
ARGS.add_argument("--depth", type=int, default=4)
ARGS.add_argument("--threads", type=int, default=1)
A = ARGS.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(A.threads)
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)
import numpy as np  # noqa: E402  (after the thread count is set)

PROGRAM = os.path.join(os.path.dirname(__file__), "..", "programs", "spectra", "tanh_jacobian.tp")
SW = 1.5


def numpy_matrix(n, depth, rng):
    """J J^T of the same network (tanh, weights N(0, SW/n)), formed explicitly."""
    x = rng.standard_normal(n)
    J = np.eye(n)
    a = x
    for _ in range(depth):
        W = rng.standard_normal((n, n)) * np.sqrt(SW / n)
        h = W @ a
        J = (1 - np.tanh(h) ** 2)[:, None] * (W @ J)
        a = np.tanh(h)
    return J @ J.T


def main():
    n, L = A.width, A.depth
    t0 = time.perf_counter()
    out = subprocess.run([A.netsor, "spectrum", PROGRAM, "-D", "L=%d" % L, "--width", str(n), "--seeds", "1",
                          "--threads", str(A.threads), "--json"], check=True, capture_output=True, text=True).stdout
    t_netsor = time.perf_counter() - t0
    s = json.loads(out)["spectra"]["JJT"]
    t0 = time.perf_counter()
    S = numpy_matrix(n, L, np.random.default_rng(0))
    t_form = time.perf_counter() - t0
    t0 = time.perf_counter()
    ev = np.linalg.eigvalsh(S)
    t_numpy = time.perf_counter() - t0
    print("J J^T, tanh depth %d, n = %d, %d BLAS thread(s)" % (L, n, A.threads))
    print("  netsor spectrum (whole command)   %7.2f s   mean %.4f  max %.3f  (%s)"
          % (t_netsor, s["moments"][0]["mean"], s["max"], s["method"]))
    print("  numpy form + eigvalsh             %7.2f s   mean %.4f  max %.3f" % (t_form + t_numpy, ev.mean(), ev.max()))
    print("  numpy eigvalsh alone              %7.2f s" % t_numpy)
    print("  ratio (numpy form + eigvalsh) / netsor: %.2f;  eigvalsh alone / netsor: %.2f"
          % ((t_form + t_numpy) / t_netsor, t_numpy / t_netsor))


if __name__ == "__main__":
    sys.exit(main())
