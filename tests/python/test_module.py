# The Python module against closed forms (primer section 3), the command line's
# error locations, -D defines and seed reproducibility.
import math
import os
import threading
import time

import numpy as np
import pytest

import netsor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NNGP = os.path.join(ROOT, "programs", "mlp_nngp.tp")
XI = [np.array([1.0, 0.0, 0.5]), np.array([0.2, -1.0, 0.3]), np.array([0.2, -1.0, 0.3]), np.array([-0.7, 0.4, 1.1])]


def relu_pair(k11, k12, k22):
    c = max(-1.0, min(1.0, k12 / math.sqrt(k11 * k22)))
    t = math.acos(c)
    return math.sqrt(k11 * k22) * (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi)


def erf_pair(k11, k12, k22):
    return 2 / math.pi * math.asin(2 * k12 / math.sqrt((1 + 2 * k11) * (1 + 2 * k22)))


def nngp(pair, sw2, sb2, depth):
    """K^{depth+1} over the four inputs of programs/mlp_nngp.tp, by the primer's recursion."""
    K = np.array([[sw2 * a.dot(b) / 3 + sb2 for b in XI] for a in XI])
    for _ in range(depth):
        K = np.array([[sw2 * pair(K[i, i], K[i, j], K[j, j]) + sb2 for j in range(4)] for i in range(4)])
    return K


def test_acceptance_value():
    p = netsor.Program.from_file(NNGP)
    assert p.limit()["relu_K[1][1]"].value == pytest.approx(4 / 3, abs=1e-12)


@pytest.mark.parametrize("depth", [4, 2])
def test_nngp_limits_match_the_closed_forms(depth):
    p = netsor.Program.from_file(NNGP, defines={"depth": depth})
    lim = p.limit()
    assert len(lim) == 20
    relu, erf = nngp(relu_pair, 2.0, 0.1, depth), nngp(erf_pair, 1.5, 0.1, depth)
    for a in range(1, 5):
        for c in range(a, 5):
            for name, K in (("relu_K", relu), ("erf_K", erf)):
                e = lim["%s[%d][%d]" % (name, a, c)]
                assert isinstance(e.method, str) and e.method
                assert 0 <= e.error < 1e-8
                assert abs(e.value - K[a - 1, c - 1]) <= e.error + 1e-12, (name, a, c, e)


SIMPLE = """
const sw2 = 1.0
matrix W : gaussian(var=sw2)
vector v : gaussian(var=2.0)
x = W @ v
report m = avg(x * x)
report r = avg(relu(x) * relu(x))
"""


def test_from_source_with_defines():
    # E[x^2] = sw2 * E[v^2] = 2 sw2; E[relu(x)^2] = half of it.
    for sw2 in (1.0, 3.0):
        lim = netsor.Program.from_source(SIMPLE, defines={"sw2": sw2}).limit(tol=1e-10)
        assert lim["m"].value == pytest.approx(2 * sw2, rel=1e-12)
        assert lim["r"].value == pytest.approx(sw2, rel=1e-10)
        assert float(lim["r"]) == lim["r"].value


def test_program_error_carries_the_location():
    with pytest.raises(netsor.ProgramError) as info:
        netsor.Program.from_file(os.path.join(ROOT, "tests", "bad", "undefined_name.tp"))
    e = info.value
    assert e.file.endswith("undefined_name.tp")
    assert (e.line, e.col) == (2, 5)
    assert e.message == "undefined name 'W'"
    assert "2 | h = W @ x" in str(e) and "^" in str(e)


def test_program_error_from_source_names_the_given_file():
    with pytest.raises(netsor.ProgramError) as info:
        netsor.Program.from_source("vector v : gaussian(var=1)\nreport s = avg(v * q)\n", name="mine.tp")
    e = info.value
    assert (e.file, e.line, e.col) == ("mine.tp", 2, 20)
    assert str(e).startswith("mine.tp:2:20: error: undefined name 'q'")


def test_unstable_program_is_a_program_error():
    with pytest.raises(netsor.ProgramError) as info:
        netsor.Program.from_file(os.path.join(ROOT, "programs", "sp_unstable.tp")).limit()
    assert "unstable" in info.value.message and "grow like n^0.5" in info.value.message
    assert info.value.line > 0


def test_unknown_define_is_a_usage_error():
    with pytest.raises(netsor.UsageError, match="no constant 'nope'"):
        netsor.Program.from_file(NNGP, defines={"nope": 1.0})
    assert issubclass(netsor.UsageError, ValueError)


def test_run_is_reproducible_by_seed():
    p = netsor.Program.from_source(SIMPLE)
    a, b, c = p.run(256, seeds=4, seed=7), p.run(256, seeds=4, seed=7), p.run(256, seeds=4, seed=8)
    assert isinstance(a["m"].per_seed, np.ndarray) and a["m"].per_seed.shape == (4,)
    assert np.array_equal(a["m"].per_seed, b["m"].per_seed)
    assert not np.array_equal(a["m"].per_seed, c["m"].per_seed)
    assert a["m"].mean == pytest.approx(a["m"].per_seed.mean(), rel=1e-12)
    assert a["m"].sem == pytest.approx(a["m"].per_seed.std(ddof=1) / 2, rel=1e-9)
    # the thread count changes nothing
    assert np.array_equal(p.run(256, seeds=4, seed=7, threads=1)["m"].per_seed, a["m"].per_seed)


def test_run_agrees_with_the_limit():
    # avg(x^2) over n coordinates: mean 2, sd of one run 2 sqrt(2/n) (x ~ N(0, 2 |v|^2/n)).
    r = netsor.Program.from_source(SIMPLE).run(2048, seeds=16, seed=1)["m"]
    assert abs(r.mean - 2.0) < 4 * r.sem
    assert 0.5 * 2 * math.sqrt(2 / 2048) < r.sd < 2 * 2 * math.sqrt(2 / 2048) * 1.5


def test_converge_columns():
    c = netsor.Program.from_source(SIMPLE).converge([512, 128, 256], seeds=2)
    assert list(c.widths) == [128, 256, 512]
    s = c["m"]
    assert s.limit.value == pytest.approx(2.0)
    assert s.mean.shape == s.sem.shape == s.error.shape == s.rmse.shape == (3,)
    assert list(s.seeds) == [8, 4, 2]  # more seeds at smaller widths, as netsor converge
    assert np.allclose(s.error, abs(s.mean - 2.0))
    assert set(c.series) == {"m", "r"}
    assert c.svg("simple").startswith("<?xml") or c.svg("simple").startswith("<svg")
    with pytest.raises(KeyError):
        c["nope"]


def test_derive_and_abc():
    d = netsor.Program.from_source(SIMPLE).derive()
    assert d["scalars"]["m"]["value"] == pytest.approx(2.0)
    assert "x" in d["z"]
    text = netsor.Program.from_source(SIMPLE).derive("text")
    assert "Z[x] = Zhat[x]" in text and "m = E[Z[x] * Z[x]] = 2" in text
    # Yang and Hu 2021: muP learns features, NTK is a kernel limit, SP with c = 0 is unstable.
    assert netsor.abc("mup")["regime"] == "feature_learning"
    assert netsor.abc("ntk")["regime"] == "kernel"
    assert netsor.abc("sp")["regime"] == "unstable"
    with pytest.raises(ValueError):
        netsor.abc("nope")


def test_long_calls_release_the_gil():
    p = netsor.Program.from_file(NNGP)
    # Size the call to this machine: double the seeds until one call takes
    # 0.3 s, so that a call holding the GIL would stall the main thread for
    # at least that long (a fixed size is too short on a fast CI machine).
    seeds = 4
    while True:
        t0 = time.monotonic()
        p.run(2048, seeds=seeds, threads=1)
        if time.monotonic() - t0 > 0.3 or seeds >= 4096:
            break
        seeds *= 2
    done = threading.Event()
    worker = threading.Thread(target=lambda: (p.run(2048, seeds=seeds, threads=1), done.set()))
    ticks, start = [], time.monotonic()
    worker.start()
    while not done.is_set():
        ticks.append(time.monotonic())
        time.sleep(0.001)
    worker.join()
    took = time.monotonic() - start
    gaps = np.diff([start] + ticks)
    assert took > 0.2, "the run is too short to show anything"
    assert gaps.max() < min(0.1, took / 3), "the main thread stalled for %.3f s of %.3f s" % (gaps.max(), took)


def test_coordcheck_of_sp_unstable():
    # SP, one step: the second layer's update grows like n^{1/2} (n * n^{-1/2}),
    # the backward vectors are n^{-1/2}, the forward ones flat.
    p = netsor.Program.from_file(os.path.join(ROOT, "programs", "sp_unstable.tp"))
    c = p.coordcheck(widths=[256, 512, 1024, 2048], seeds=16, only=["h", "dh"], step_index=2)
    got = {v["name"]: v for v in c["vectors"]}
    assert set(got) == {"h[1][0][1]", "h[2][0][1]", "dh[2][0][1]", "dh[1][0][1]", "h[1][1][1]", "h[2][1][1]"}
    expected = {"h[1][0][1]": 0, "h[2][0][1]": 0, "dh[2][0][1]": -0.5, "dh[1][0][1]": -0.5, "h[1][1][1]": 0, "h[2][1][1]": 0.5}
    for name, k in expected.items():
        v = got[name]
        assert v["predicted"] == k
        assert v["fitted_se"] < 0.1
        assert abs(v["fitted"] - k) <= 0.1 + 3 * v["fitted_se"], v
        assert not v["disagree"]
    assert got["h[2][1][1]"]["panel"] == "step 1"
    assert c["svg"].startswith("<?xml") and "step 1" in c["svg"]


def test_spectrum_finite_width_and_limit():
    p = netsor.Program.from_file(os.path.join(ROOT, "programs", "spectra", "marchenko_pastur.tp"))
    # The limit alone: A is 0.3n x n with entries N(0, 1/n), so A.T @ A has the
    # Marchenko-Pastur law of ratio 0.3 on [(1 - sqrt 0.3)^2, (1 + sqrt 0.3)^2]
    # and an atom of mass 0.7 at 0 (closed forms).
    lim = p.spectrum(width=None, limit=True)["spectra"]["rho_0_3"]["limit"]
    (a, b), = lim["support"]
    assert abs(a - (1 - 0.3 ** 0.5) ** 2) < 1e-6 and abs(b - (1 + 0.3 ** 0.5) ** 2) < 1e-6
    assert abs(lim["atoms"][0]["mass"] - 0.7) < 1e-12
    # Finite width: (1/n) Tr(A.T @ A) has mean 0.3 exactly.
    s = p.spectrum(width=256, seeds=4)
    m1 = s["spectra"]["rho_0_3"]["moments"][0]
    assert abs(m1["mean"] - 0.3) <= 4 * m1["sem"] + 1e-12
    assert s["svg"].startswith("<")
    with pytest.raises(ValueError):
        p.spectrum(width=None)
