#!/usr/bin/python3
"""The finite-width executor against numpy (OpenBLAS) and PyTorch, side by side
in one run: bench/mlp3.tp (3 hidden ReLU layers, 4 inputs, biases), float64 and
float32, at n = 1024 ... 16384, then the sampler's and the fused product's rates.

    /usr/bin/python3 bench/exec_bench.py [--netsor build/netsor] [--widths 1024,4096]
                                         [--seeds 8] [--threads 2] [--no-torch]

Every implementation gets the same work and the same cores. Per seed: sample
U, W2, W3, W4 and the biases, push the 4 inputs through as one n x 4 matrix per
layer (W generated in panels of 1024 columns and multiplied in, never stored
whole), and form the 10 kernel entries. numpy's and PyTorch's samplers are
single-threaded, so the baselines run their seeds in `threads` worker
processes with one BLAS/ATen thread each, the same split netsor makes (seeds in
parallel). Their times exclude starting Python and importing the library;
netsor's include starting the process and parsing. CPU time is user + system.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
PANEL = 1024
XI = [[1.0, 0.0, 0.5, -0.3], [0.2, -1.0, 0.3, 0.8], [-0.7, 0.4, 1.1, 0.1], [0.5, 0.5, -0.5, 0.5]]


def mlp3_numpy(n, seeds, dtype):
    import numpy as np
    dt = np.float64 if dtype == "float64" else np.float32
    xi = np.array(XI, dtype=dt)
    out = []
    for s in seeds:
        rng = np.random.default_rng(s)
        b = [rng.standard_normal(n, dtype=dt) * dt(np.sqrt(0.1)) for _ in range(4)]
        H = (rng.standard_normal((n, 4), dtype=dt) * dt(np.sqrt(2.0 / 4))) @ xi.T + b[0][:, None]
        for l in range(1, 4):
            X, H = np.maximum(H, 0), np.tile(b[l][:, None], (1, 4))
            for c in range(0, n, PANEL):
                w = min(PANEL, n - c)
                H += (rng.standard_normal((n, w), dtype=dt) * dt(np.sqrt(2.0 / n))) @ X[c:c + w]
        out.append((H.T @ H / n)[np.triu_indices(4)].astype(float).tolist())
    return out


def mlp3_torch(n, seeds, dtype):
    import torch
    torch.set_num_threads(1)
    dt = torch.float64 if dtype == "float64" else torch.float32
    xi = torch.tensor(XI, dtype=dt)
    iu = torch.triu_indices(4, 4)
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        b = [torch.randn(n, generator=g, dtype=dt) * 0.1 ** 0.5 for _ in range(4)]
        H = (torch.randn(n, 4, generator=g, dtype=dt) * 0.5 ** 0.5) @ xi.T + b[0][:, None]
        for l in range(1, 4):
            X, H = torch.relu(H), b[l][:, None].repeat(1, 4)
            for c in range(0, n, PANEL):
                w = min(PANEL, n - c)
                H += (torch.randn(n, w, generator=g, dtype=dt) * (2.0 / n) ** 0.5) @ X[c:c + w]
        K = H.T @ H / n
        out.append(K[iu[0], iu[1]].double().tolist())
    return out


def worker(lib, n, seeds, dtype):
    """Runs in a child process: prints its seeds' kernels and its own times."""
    f = mlp3_numpy if lib == "numpy" else mlp3_torch
    if lib == "torch":
        import torch  # noqa: F401  (imported before the clock starts)
    else:
        import numpy  # noqa: F401
    w0, c0 = time.perf_counter(), time.process_time()
    k = f(n, seeds, dtype)
    print(json.dumps({"k": k, "wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}))


def baseline(lib, n, seeds, dtype, threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # Some machines set these for old OpenBLAS builds; they slow a current one.
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    parts = [list(range(i, seeds, threads)) for i in range(threads)]
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", lib, str(n), dtype, ",".join(map(str, p))],
                              stdout=subprocess.PIPE, text=True, env=env) for p in parts if p]
    res = [json.loads(p.communicate()[0]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{lib} worker failed")
    return [k for r in res for k in r["k"]], max(r["wall"] for r in res), sum(r["cpu"] for r in res)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def netsor(exe, args):
    w0, c0 = time.perf_counter(), children_cpu()
    out = subprocess.run([exe] + args, check=True, capture_output=True, text=True).stdout
    return json.loads(out), time.perf_counter() - w0, children_cpu() - c0


def has_torch():
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        lib, n, dtype, seeds = sys.argv[2], int(sys.argv[3]), sys.argv[4], [int(s) for s in sys.argv[5].split(",")]
        return worker(lib, n, seeds, dtype)
    ap = argparse.ArgumentParser()
    ap.add_argument("--netsor", default=os.path.join(HERE, "..", "build", "netsor"))
    ap.add_argument("--widths", default="1024,2048,4096,8192,16384")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    S, T = a.seeds, a.threads
    libs = ["numpy"] + ([] if a.no_torch or not has_torch() else ["torch"])
    if "torch" not in libs and not a.no_torch:
        print("PyTorch not found (Debian: apt-get install --no-install-recommends python3-torch): skipped")
    print(f"bench/mlp3.tp, {S} seeds, {T} threads; time in s (wall / CPU), ratio = baseline wall / netsor wall")
    print(f"{'n':>6} {'dtype':8} {'netsor':>14} " + " ".join(f"{l:>14} {'ratio':>6}" for l in libs))
    for n in [int(w) for w in a.widths.split(",")]:
        for dtype in ("float64", "float32"):
            args = ["run", os.path.join(HERE, "mlp3.tp"), "--width", str(n), "--seeds", str(S), "--threads", str(T),
                    "--json"] + (["--float32"] if dtype == "float32" else [])
            j, w, c = netsor(a.netsor, args)
            row = f"{n:>6} {dtype:8} {w:6.2f} / {c:5.2f} "
            for lib in libs:
                k, bw, bc = baseline(lib, n, S, dtype, T)
                row += f"{bw:6.2f} / {bc:5.2f} {bw / w:5.2f}x "
                if lib == "numpy" and dtype == "float64":
                    # Independent random numbers: the kernel means agree within their errors.
                    names = [f"K[{i}][{c}]" for i in range(1, 5) for c in range(i, 5)]
                    z = 0.0
                    for q, name in enumerate(names):
                        vals = [x[q] for x in k]
                        m = sum(vals) / S
                        se2 = sum((v - m) ** 2 for v in vals) / (S - 1) / S
                        z = max(z, abs(m - j["quantities"][name]["mean"]) / (se2 + j["quantities"][name]["sem"] ** 2) ** 0.5)
                    row += f"(|z| <= {z:.1f}) "
            print(row, flush=True)

    # The sampler alone: one streamed 8192 x 8192 matrix times one vector; and the
    # fused product: the same with 16 vectors, whose extra time is 15 more
    # multiply-adds per matrix entry, against this machine's GEMM rate (numpy,
    # OpenBLAS, one thread, 2048 x 2048 x 2048 in float64).
    m, seeds = 8192, 4 * T
    with tempfile.TemporaryDirectory() as d:
        times = {}
        for k in (1, 16):
            p = os.path.join(d, f"k{k}.tp")
            with open(p, "w") as f:
                f.write("matrix W : gaussian(var=1)\n")
                f.write("".join(f"vector x{i} : gaussian(var=1)\ny{i} = W @ x{i}\n" for i in range(k)))
                f.write("report r = avg(" + " + ".join(f"y{i} * y{i}" for i in range(k)) + ")\n")
            _, _, times[k] = netsor(a.netsor, ["run", p, "--width", str(m), "--seeds", str(seeds), "--threads", str(T),
                                               "--json"])
    rate = seeds * m * m / times[1]
    fused = 2 * 15 * seeds * m * m / (times[16] - times[1])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    gemm = float(subprocess.run([sys.executable, "-c", "import numpy as np, time\n"
                                 "a = np.random.rand(2048, 2048); a @ a; t = time.perf_counter(); a @ a; a @ a\n"
                                 "print(2 * 2 * 2048 ** 3 / (time.perf_counter() - t))"],
                                env=env, capture_output=True, text=True, check=True).stdout)
    print(f"sampler: {rate / 1e9:.2f} G normals per CPU-second (float64, including the product with one vector)")
    print(f"fused product, 16 vectors: {fused / 1e9:.1f} GFLOP per CPU-second = {fused / gemm:.2f} x the "
          f"one-thread DGEMM rate ({gemm / 1e9:.1f} GFLOP/s)")


if __name__ == "__main__":
    sys.exit(main())
