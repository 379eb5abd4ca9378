#!/usr/bin/python3
"""The finite-width executor against an equivalent hand-written numpy script,
run side by side: bench/mlp3.tp (3 hidden ReLU layers, 4 inputs, biases) at
n = 4096 with 8 seeds. Then the normal sampler's throughput against this
machine's memory bandwidth.

    /usr/bin/python3 bench/exec_bench.py [--netsor build/netsor] [--width 4096] [--seeds 8]

numpy (Debian python3-numpy, OpenBLAS) gets the same work: per seed, sample U,
W2, W3, W4 and the biases, batch the 4 inputs into one matrix product per layer,
and form the 10 kernel entries. Both use every core: numpy through OpenBLAS
threads, netsor by running seeds in parallel.
"""
import argparse, json, os, subprocess, sys, tempfile, time

# Some machines here set these for old OpenBLAS builds; they slow a current
# numpy, so the baseline runs without them (before numpy loads OpenBLAS).
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
XI = np.array([[1.0, 0.0, 0.5, -0.3], [0.2, -1.0, 0.3, 0.8], [-0.7, 0.4, 1.1, 0.1], [0.5, 0.5, -0.5, 0.5]])


def numpy_mlp3(n, seeds):
    out = []
    for s in range(seeds):
        rng = np.random.default_rng(s)
        U = rng.standard_normal((n, 4)) * np.sqrt(2.0 / 4)
        b = [rng.standard_normal(n) * np.sqrt(0.1) for _ in range(4)]
        H = U @ XI.T + b[0][:, None]                # n x 4: the four inputs batched
        for l in range(1, 4):
            W = rng.standard_normal((n, n)) * np.sqrt(2.0 / n)
            H = W @ np.maximum(H, 0) + b[l][:, None]
        K = H.T @ H / n
        out.append(K[np.triu_indices(4)])
    return np.array(out)


def timed(f):
    t0 = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0


def netsor(exe, args):
    out = subprocess.run([exe] + args, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--netsor", default=os.path.join(HERE, "..", "build", "netsor"))
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--seeds", type=int, default=8)
    a = ap.parse_args()
    n, S = a.width, a.seeds
    print(f"bench/mlp3.tp at n = {n}, {S} seeds, {os.cpu_count()} cores")
    res, t_np = timed(lambda: numpy_mlp3(n, S))
    j, t_ns = timed(lambda: netsor(a.netsor, ["run", os.path.join(HERE, "mlp3.tp"), "--width", str(n),
                                              "--seeds", str(S), "--json"]))
    j32, t_32 = timed(lambda: netsor(a.netsor, ["run", os.path.join(HERE, "mlp3.tp"), "--width", str(n),
                                                "--seeds", str(S), "--json", "--float32"]))
    k_np = res.mean(axis=0)
    se_np = res.std(axis=0, ddof=1) / np.sqrt(S)
    names = [f"K[{i}][{c}]" for i in range(1, 5) for c in range(i, 5)]
    k_ns = np.array([j["quantities"][q]["mean"] for q in names])
    se_ns = np.array([j["quantities"][q]["sem"] for q in names])
    print(f"  numpy (float64)            {t_np:8.2f} s")
    print(f"  netsor run (float64)       {t_ns:8.2f} s   ratio numpy/netsor = {t_np / t_ns:.2f}x")
    print(f"  netsor run --float32       {t_32:8.2f} s   ratio numpy/netsor = {t_np / t_32:.2f}x")
    z = np.abs(k_np - k_ns) / np.sqrt(se_np ** 2 + se_ns ** 2)
    print(f"  kernel means (independent random numbers) differ by at most {z.max():.1f} combined standard errors")

    # Sampler throughput: a program that is nothing but one n x n Gaussian matrix
    # (streamed, never stored) applied to a vector.
    m = 8192
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "sample.tp")
        with open(p, "w") as f:
            f.write("matrix W : gaussian(var=1)\nvector x : gaussian(var=1)\ny = W @ x\nreport r = avg(y * y)\n")
        _, t = timed(lambda: netsor(a.netsor, ["run", p, "--width", str(m), "--seeds", str(2 * os.cpu_count()), "--json"]))
    normals = 2 * os.cpu_count() * m * m
    rate = normals / t
    buf = np.empty(1 << 27)                       # 1 GiB
    buf[:] = 1.0
    _, tw = timed(lambda: buf.fill(2.0))
    bw = buf.nbytes / tw
    print(f"  sampler: {rate / 1e6:.0f} M normals/s on {os.cpu_count()} cores = {rate * 8 / 1e9:.2f} GB/s of doubles;"
          f" memory write bandwidth (numpy fill) {bw / 1e9:.1f} GB/s: the sampler runs at {rate * 8 / bw:.2f}x bandwidth")


if __name__ == "__main__":
    sys.exit(main())
