#!/usr/bin/python3
"""Generates the calibration cases of tests/calibration/cases.json.

Each case is a small .tp program with one report and a reference value computed
here, independently of netsor:
  - Gaussian expectations in 1-3 dimensions with a random (possibly near-singular
    or rank-deficient) covariance: nested Gauss-Legendre quadrature over the
    Cholesky coordinates g = L z, split at every kink (a kink of a factor is a
    point of the innermost coordinate it depends on), graded around the smoothed
    kinks that near-singular covariances produce;
  - 4-8 dimensions: one-factor families g_i = a_i z0 + b_i z_i (z's independent),
    where E prod_i f_i(g_i) = E_z0 prod_i E_zi f_i(a_i z0 + b_i z_i) is a nested
    1-d integral, and block-independent families (a product of such expectations);
  - Zdot programs (W @ x and W.T @ y in one program), whose limits are derived by
    hand below with Stein's lemma E[y f(y)] = Var(y) E[f'(y)], so that only
    integrals of the nonlinearities themselves (never their derivatives) appear.
Every reference is computed at two resolutions; `ref_error` is their difference
plus a rounding allowance. 1-d integrals are cross-checked with mpmath.

Run: /usr/bin/python3 tests/calibration/generate.py   (fixed seed; rewrites cases.json)
"""
import itertools
import json
import math
import os
import sys

import mpmath
import numpy as np
from scipy.special import erf, expit

SEED = 20261124
R_OUT = 12.0  # the mass beyond, even times z^12, is below 1e-20

# ---------------------------------------------------------------------------
# Nonlinearities: tp text of f(A), numpy evaluation, kinks (values of A), a
# "rate" (1 / distance to the nearest complex singularity, or the frequency),
# and whether the kink is a square-root singularity.


def _softplus(u):
    return np.where(u > 30, u + np.log1p(np.exp(-np.abs(u))), np.log1p(np.exp(np.minimum(u, 30))))


def _gelu(u):
    return 0.5 * u * (1 + erf(u / math.sqrt(2)))


NONLIN = {
    # smooth
    "tanh": ("tanh({A})", np.tanh, 2 / math.pi, "smooth"),
    "erf": ("erf({A})", erf, 1.0, "smooth"),
    "sigmoid": ("sigmoid({A})", expit, 1 / math.pi, "smooth"),
    "gelu": ("gelu({A})", _gelu, 1.0, "smooth"),
    "softplus": ("softplus({A})", _softplus, 1 / math.pi, "smooth"),
    "sin": ("sin({A})", np.sin, 1.0, "smooth"),
    "cos": ("cos({A})", np.cos, 1.0, "smooth"),
    "gauss": ("exp(-({A})^2)", lambda u: np.exp(-u * u), 1.0, "smooth"),
    "expnsp": ("exp(-softplus({A}))", lambda u: np.exp(-_softplus(u)), 1 / math.pi, "smooth"),
    "poly2": ("(({A})^2 - 1)", lambda u: u * u - 1, 0.3, "smooth"),
    "poly3": ("({A})^3", lambda u: u ** 3, 0.3, "smooth"),
    "lin": ("({A})", lambda u: u, 0.1, "smooth"),
    # kinked: kink at A = 0
    "relu": ("relu({A})", lambda u: np.maximum(u, 0), 0.1, "kinked"),
    "step": ("step({A})", lambda u: (u > 0).astype(float), 0.1, "kinked"),
    "abs": ("abs({A})", np.abs, 0.1, "kinked"),
    "sign": ("sign({A})", np.sign, 0.1, "kinked"),
    "sqrtabs": ("sqrt(abs({A}))", lambda u: np.sqrt(np.abs(u)), 0.1, "kinked"),
    "powabs": ("abs({A})^0.5", lambda u: np.sqrt(np.abs(u)), 0.1, "kinked"),
    "expnabs": ("exp(-abs({A}))", lambda u: np.exp(-np.abs(u)), 0.1, "kinked"),
    "expnrelu": ("exp(-relu({A}))", lambda u: np.exp(-np.maximum(u, 0)), 0.1, "kinked"),
    # oscillating: sin/cos of a high frequency (the frequency is in A)
    "osin": ("sin({A})", np.sin, 1.0, "oscillating"),
    "ocos": ("cos({A})", np.cos, 1.0, "oscillating"),
}
SQRT_KINK = {"sqrtabs", "powabs"}
POOL = {c: [k for k, v in NONLIN.items() if v[3] == c] for c in ("smooth", "kinked", "oscillating")}


def fmt(x):
    """A float as the shortest text that reads back to the same double."""
    r = repr(float(x))
    return r if "e" not in r else "%.17g" % x


class Factor:
    """f(c . g + o) with c a coefficient vector over the family's variables."""

    def __init__(self, name, c, o):
        self.name, self.c, self.o = name, np.asarray(c, float), float(o)

    def tp(self, names):
        terms = []
        for ci, nm in zip(self.c, names):
            if ci != 0:
                terms.append("%s * %s" % (fmt(ci), nm) if ci != 1 else nm)
        arg = " + ".join(terms) if terms else "0"
        if self.o != 0:
            arg += (" - %s" % fmt(-self.o)) if self.o < 0 else (" + %s" % fmt(self.o))
        return NONLIN[self.name][0].format(A=arg)

    def f(self, u):
        return NONLIN[self.name][1](u)

    def kinks(self):
        return [0.0] if NONLIN[self.name][3] == "kinked" else []

    def at(self, g):
        """The factor of a single variable g."""
        return self.f(self.c[0] * g + self.o)


# ---------------------------------------------------------------------------
# Quadrature over standard normal coordinates.


def gl(q):
    x, w = np.polynomial.legendre.leggauss(q)
    return (x + 1) / 2, w / 2


def level_nodes(kinks, h, q, smooth_map):
    """Nodes and weights (times the normal density) on rows of panels.

    kinks: (rows, m) array of breakpoints (may be empty); h: panel width in
    [-4.5, 4.5] (2h outside). Returns z, w of shape (rows, nodes)."""
    inner = np.arange(-4.5, 4.5 + 1e-9, h)
    outer = np.concatenate([np.arange(-R_OUT, -4.5, 2 * h), np.arange(4.5 + 2 * h, R_OUT, 2 * h), [R_OUT]])
    base = np.unique(np.concatenate([inner, outer]))
    rows = kinks.shape[0]
    edges = np.concatenate([np.broadcast_to(base, (rows, base.size)), np.clip(kinks, -R_OUT, R_OUT)], axis=1)
    edges.sort(axis=1)
    a, b = edges[:, :-1], edges[:, 1:]
    u, wu = gl(q)
    if smooth_map:  # z = a + (b - a) s(u), s = u^2 (3 - 2u): cancels sqrt endpoint singularities
        s, ds = u * u * (3 - 2 * u), 6 * u * (1 - u)
    else:
        s, ds = u, np.ones_like(u)
    z = a[..., None] + (b - a)[..., None] * s
    w = (b - a)[..., None] * (wu * ds) * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z.reshape(rows, -1), w.reshape(rows, -1)


def soft_points(center, eps):
    """Breakpoints graded geometrically from a smoothed kink of width eps out to
    distance 2 (so that a smoothed square-root kink is resolved on every scale)."""
    g = [0.0] + [2.0 ** k for k in range(-2, int(math.log2(2 / eps)) + 1)]
    return [center + eps * t for t in g] + [center - eps * t for t in g[1:]]


def expect_lower(L, factors, h, q, smooth_map):
    """E prod_k f_k(c_k . g + o_k), g = L z, L lower triangular (d <= 3)."""
    d = L.shape[0]
    W = [fa.c @ L for fa in factors]  # coefficients over z
    lev = []
    for w in W:
        nz = np.nonzero(np.abs(w) > 0)[0]
        lev.append(nz[-1] if nz.size else -1)
    const = np.prod([fa.f(np.array(fa.o)) for fa, l in zip(factors, lev) if l < 0]) if any(l < 0 for l in lev) else 1.0

    # The kink hyperplanes w . z = kappa - o. After integrating out the coordinates
    # deeper than j, the integrand is not smooth in z_j where the hyperplanes' traces
    # on the fiber change their arrangement: where a set of them determines z_j
    # (one hyperplane of this level, two crossing lines in 2-d, three planes
    # meeting in a point in 3-d, ...). z_j = lam . (rhs - outer part) for each such set.
    # The kink hyperplanes w . z = kappa - o. After integrating out the coordinates
    # deeper than j, the integrand is not smooth in z_j where the hyperplanes' traces
    # on the fiber change their arrangement: where a set of them determines z_j
    # (one hyperplane of this level, two crossing lines in 2-d, three planes
    # meeting in a point in 3-d, ...); then z_j = lam . (rhs - outer part).
    # Near-singular covariances give hyperplanes with tiny coefficients: the sets
    # they determine once those are dropped are smoothed kinks of width
    # eps = sum |lam_s| |dropped_s|, graded by soft_points.
    planes = []
    for fa, w in zip(factors, W):
        for k in fa.kinks():
            if np.any(w != 0):
                tiny = np.abs(w) < 2e-3 * np.linalg.norm(w)
                planes.append((w, np.where(tiny, 0.0, w), np.linalg.norm(w[tiny]), k - fa.o))
    determining = []
    for j in range(d):
        sets = []
        for k in range(1, d - j + 1):
            for S in itertools.combinations(range(len(planes)), k):
                for rounded in (False, True):
                    A = np.array([planes[s][1 if rounded else 0][j:] for s in S])
                    if not np.all(np.any(A != 0, axis=1)):
                        continue
                    e0 = np.zeros(d - j)
                    e0[0] = 1
                    lam = np.linalg.lstsq(A.T, e0, rcond=None)[0]
                    if np.linalg.norm(A.T @ lam - e0) < 1e-10 and np.linalg.norm(lam) < 1e8:
                        eps = sum(abs(l) * planes[s][2] for l, s in zip(lam, S)) if rounded else 0.0
                        sets.append((S, lam, eps))
                        break
        determining.append(sets)

    def kinks_at(j, zs):
        """Breakpoints for level j given the outer coordinates zs (list of (rows,) arrays)."""
        rows = zs[0].shape[0] if zs else 1
        pts = []
        for S, lam, eps in determining[j]:
            rhs = [planes[s][3] - sum(planes[s][0][i] * zs[i] for i in range(j)) for s in S]
            center = sum(l * r for l, r in zip(lam, rhs))
            pts.extend([center] if eps == 0 else soft_points(center, eps))
        # A factor of a deeper level whose deeper coefficients are small next to
        # its coefficient of z_j: integrating them out smooths its kink over a width eps.
        for fa, w, l in zip(factors, W, lev):
            if l > j and w[j] != 0:
                eps = math.sqrt(sum(w[i] ** 2 for i in range(j + 1, l + 1))) / abs(w[j])
                if eps < 0.3:
                    off = fa.o + sum(w[i] * zs[i] for i in range(j))
                    for k in fa.kinks():
                        pts.extend(soft_points((k - off) / w[j], eps))
        if not pts:
            return np.zeros((rows, 0))
        return np.stack([np.broadcast_to(p, (rows,)) for p in pts], axis=1)

    def integrate(j, zs, weight):
        # zs: outer coordinates, each (rows,); returns (rows,) partial integrals
        rows = weight.shape[0]
        z, w = level_nodes(kinks_at(j, zs), h, q, smooth_map)
        full = [zz[:, None] * np.ones_like(z) for zz in zs] + [z]
        val = np.ones_like(z)
        for fa, wv, l in zip(factors, W, lev):
            if l == j:
                u = fa.o + sum(wv[i] * full[i] for i in range(j + 1))
                val = val * fa.f(u)
        if j + 1 < d:
            flat = [f.reshape(-1) for f in full]
            inner = np.empty(z.size)
            chunk = max(1, 200000 // max(1, z.shape[1]))
            for s0 in range(0, z.size, chunk * z.shape[1]):
                s1 = min(z.size, s0 + chunk * z.shape[1])
                inner[s0:s1] = integrate(j + 1, [f[s0:s1] for f in flat], np.ones(s1 - s0))
            val = val * inner.reshape(z.shape)
        return (val * w).sum(axis=1) * weight

    return const * integrate(0, [], np.ones(1))[0]


def expect_one_factor(a, b, factors_by_var, h, q, smooth_map):
    """E prod_i F_i(g_i), g_i = a_i z0 + b_i z_i; F_i a product of Factors of g_i alone."""
    pts = []
    for ai, bi, fs in zip(a, b, factors_by_var):
        for fa in fs:
            for k in fa.kinks():
                cc = fa.c[0]
                if ai == 0:
                    continue
                center = (k - fa.o) / (cc * ai)
                eps = abs(bi / ai)
                pts.extend([center] if eps == 0 else (soft_points(center, eps) if eps < 0.3 else []))
    z0, w0 = level_nodes(np.array([pts]) if pts else np.zeros((1, 0)), h, q, smooth_map)
    z0, w0 = z0[0], w0[0]
    total = np.ones_like(z0)
    for ai, bi, fs in zip(a, b, factors_by_var):
        if bi == 0:
            g = ai * z0
            v = np.ones_like(z0)
            for fa in fs:
                v = v * fa.f(fa.c[0] * g + fa.o)
            total *= v
            continue
        ks = []
        for fa in fs:
            for k in fa.kinks():
                ks.append(((k - fa.o) / fa.c[0] - ai * z0) / bi)
        kin = np.stack(ks, axis=1) if ks else np.zeros((z0.size, 0))
        zi, wi = level_nodes(kin, h, q, smooth_map)
        g = ai * z0[:, None] + bi * zi
        v = np.ones_like(g)
        for fa in fs:
            v = v * fa.f(fa.c[0] * g + fa.o)
        total *= (v * wi).sum(axis=1)
    return float((total * w0).sum())


def two_resolutions(fn, scale_rate, smooth_map, cheap=False):
    """fn(h, q) at two resolutions: (value, |difference| + rounding)."""
    h = min(1.0, 1.5 / max(scale_rate, 1e-9))
    if cheap:
        v1, v2 = fn(h, 16), fn(h, 22)
    else:
        v1, v2 = fn(h, 20), fn(h / 2, 24)
    return v2, abs(v2 - v1) + 1e-14 * max(1.0, abs(v2))  # plus rounding in sums of ~1e6 terms


# ---------------------------------------------------------------------------
# Case construction.


class Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.cases = []

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def nonlin(self, category):
        """A nonlinearity of the category; exp of a non-positive argument (which today's
        engine refuses) at a quarter of its share, so that most cases get an answer to judge."""
        name = self.pick(POOL[category])
        if name.startswith("exp") or name == "gauss":
            if self.rng.random() > 0.25:
                name = self.pick([n for n in POOL[category] if not (n.startswith("exp") or n == "gauss")])
        return name

    def nonlin_list(self, category, count):
        """count nonlinearity names; at least one of the category unless smooth."""
        names = [self.nonlin("smooth") for _ in range(count)]
        if category != "smooth":
            k = int(self.rng.integers(count))
            names[k] = self.nonlin(category)
            for i in range(count):
                if i != k and self.rng.random() < 0.3:
                    names[i] = self.nonlin(category)
        return names

    def arg_scale(self, name, sd, fmax=7.0):
        """A coefficient for the argument and the offset; fmax caps oscillating frequencies."""
        r = self.rng
        if name in ("osin", "ocos"):
            c = r.uniform(min(3.0, fmax - 0.5), fmax) / max(sd, 1e-3)
        elif name in ("poly3", "poly2"):
            c = r.uniform(0.3, 1.0)
        else:
            c = r.uniform(0.4, 2.0)
        c = round(float(c * self.pick([-1, 1])), 3)
        o = round(float(r.uniform(-0.8, 0.8)), 3) if r.random() < 0.6 else 0.0
        if name in ("ocos", "osin"):
            o = round(float(r.uniform(-1.5, 1.5)), 3)
        return c, o

    def rate(self, factors, sds):
        m = 0.1
        for fa in factors:
            sd = math.sqrt(sum((fa.c[i] * sds[i]) ** 2 for i in range(len(sds)))) if fa.c.size else 0
            m = max(m, NONLIN[fa.name][2] * sd * (1 if fa.name not in ("osin", "ocos") else 1))
            if fa.name in ("osin", "ocos", "sin", "cos"):
                m = max(m, sd)
        return m

    def add(self, cid, category, dim, structure, program, report, value, err, note=""):
        self.cases.append(dict(id=cid, category=category, dim=dim, structure=structure, program=program,
                               report=report, reference=value, ref_error=err, note=note))

    # --- 1-3 dimensions, general covariance -----------------------------------
    def covariance_lower(self, d, kind):
        r = self.rng
        L = np.tril(r.normal(size=(d, d)))
        for i in range(d):
            L[i, i] = abs(L[i, i]) + 0.3
        L *= r.uniform(0.5, 1.5)
        if kind == "near_singular" and d > 1:
            i = int(r.integers(1, d))
            L[i, i] = 10.0 ** r.uniform(-7, -3)
        if kind == "rank_deficient" and d > 1:
            i = int(r.integers(1, d))
            L[i, i] = 0.0
            if r.random() < 0.5:  # an exact duplicate of an earlier variable
                L[i, :] = L[i - 1, :]
                L[i, i] = 0.0
                L[i, i - 1] = L[i - 1, i - 1]
                L[i, : i - 1] = L[i - 1, : i - 1]
        return L

    def low_dim(self, n):
        r = self.rng
        for t in range(n):
            d = 1 + t % 3
            category = ("smooth", "kinked", "oscillating")[(t // 3) % 3]
            kind = self.pick(["regular", "regular", "near_singular", "rank_deficient"]) if d > 1 else "regular"
            L = self.covariance_lower(d, kind)
            fmax = 3.0 if d == 3 else 7.0  # the 3-d reference's cost grows like the frequency cubed
            cov = L @ L.T
            sds = np.sqrt(np.diag(cov))
            cid = "g%03d" % len(self.cases)
            names = ["%s_%d" % (cid, i + 1) for i in range(d)]
            # terms: products of factors, each factor of one variable or (1 in 3) of a combination
            nterms = 1 if r.random() < 0.7 else 2
            terms = []
            for _ in range(nterms):
                nf = int(r.integers(1, d + 2))
                fnames = self.nonlin_list(category, nf)
                facs = []
                for fn in fnames:
                    c = np.zeros(d)
                    if d > 1 and r.random() < 0.3:
                        c = np.round(r.uniform(-1, 1, size=d), 2)
                        if not c.any():
                            c[0] = 1.0
                        sd = math.sqrt(c @ cov @ c)
                        s, o = self.arg_scale(fn, sd, fmax)
                        # keep the coefficients as printed: fold s into c
                        c = np.round(c * s, 3)
                    else:
                        i = int(r.integers(d))
                        s, o = self.arg_scale(fn, sds[i], fmax)
                        c[i] = s
                    facs.append(Factor(fn, c, o))
                coef = round(float(r.uniform(-2, 2)), 2) if nterms > 1 else 1.0
                terms.append((coef, facs))
            rate = max(self.rate(f, sds) for _, f in terms)
            if d == 3 and rate > 4:
                continue  # too oscillatory for the 3-d reference at this cost
            sm = any(fa.name in SQRT_KINK for _, f in terms for fa in f)
            val, err = two_resolutions(
                lambda h, q: sum(c * expect_lower(L, f, h, q, sm) for c, f in terms), rate, sm, cheap=(d == 3))
            if d == 1:  # independent check with mpmath (tanh-sinh, split at the kinks)
                val2 = mp_expect_1d(L[0, 0], terms)
                err = max(err, abs(val2 - val))
            body = " + ".join(("%s * " % fmt(c) if c != 1 else "") + " * ".join(fa.tp(names) for fa in f)
                              for c, f in terms)
            decl = self.family_decl(cid, names, L, cov)
            prog = decl + "report %s = avg(%s)\n" % (cid, body)
            self.add(cid, category, d, "general-" + kind, prog, cid, val, err)

    def family_decl(self, cid, names, L, cov):
        """`vectors` with a covariance literal, or (half the time) U @ xi inputs."""
        d = len(names)
        if self.rng.random() < 0.5 or d == 1:
            if d == 1:
                return "vector %s : gaussian(var=%s)\n" % (names[0], fmt(cov[0, 0]))
            rows = ", ".join("[" + ", ".join(fmt(cov[i, j]) for j in range(d)) + "]" for i in range(d))
            return "vectors (%s) : gaussian(cov=[%s])\n" % (", ".join(names), rows)
        # U[n, d] with var = d: Cov(U xi, U xi') = xi . xi', so xi_i = row i of L
        out = "matrix %s_U[n, %d] : gaussian(var=%d)\n" % (cid, d, d)
        for i, nm in enumerate(names):
            out += "input %s_xi%d = [%s]\n" % (cid, i + 1, ", ".join(fmt(L[i, j]) for j in range(d)))
            out += "%s = %s_U @ %s_xi%d\n" % (nm, cid, cid, i + 1)
        return out

    # --- 4-8 dimensions: one-factor and block-independent ----------------------
    def one_factor(self, n):
        r = self.rng
        for t in range(n):
            d = 4 + t % 5
            category = ("smooth", "kinked", "oscillating")[(t // 5) % 3]
            a = np.round(r.uniform(-1.2, 1.2, size=d), 3)
            b = np.round(r.uniform(0.3, 1.2, size=d), 3)
            kind = self.pick(["regular", "regular", "near_singular", "rank_deficient"])
            if kind == "near_singular":
                b[int(r.integers(d))] = float("%.1e" % 10.0 ** r.uniform(-7, -3))
            if kind == "rank_deficient":
                for i in r.choice(d, size=2, replace=False):
                    b[i] = 0.0
            cid = "f%03d" % len(self.cases)
            names = ["%s_%d" % (cid, i + 1) for i in range(d)]
            sds = np.sqrt(a * a + b * b)
            by_var = []
            fnames = self.nonlin_list(category, d)
            for i in range(d):
                fs = []
                for fn in [fnames[i]] + ([self.nonlin("smooth")] if r.random() < 0.2 else []):
                    s, o = self.arg_scale(fn, sds[i])
                    fs.append(Factor(fn, [s], o))
                by_var.append(fs)
            rate = max(self.rate(fs, [sds[i]]) for i, fs in enumerate(by_var))
            sm = any(fa.name in SQRT_KINK for fs in by_var for fa in fs)
            val, err = two_resolutions(lambda h, q: expect_one_factor(a, b, by_var, h, q, sm), rate, sm)
            # the family: U[n, d + 1] @ xi_i with xi_i = a_i e_0 + b_i e_i (var = d + 1)
            decl = "matrix %s_U[n, %d] : gaussian(var=%d)\n" % (cid, d + 1, d + 1)
            if r.random() < 0.5:
                for i, nm in enumerate(names):
                    xi = [0.0] * (d + 1)
                    xi[0], xi[i + 1] = a[i], b[i]
                    decl += "input %s_xi%d = [%s]\n%s = %s_U @ %s_xi%d\n" % (
                        cid, i + 1, ", ".join(fmt(v) for v in xi), nm, cid, cid, i + 1)
            else:
                cov = np.outer(a, a) + np.diag(b * b)
                rows = ", ".join("[" + ", ".join(fmt(cov[i, j]) for j in range(d)) + "]" for i in range(d))
                decl = "vectors (%s) : gaussian(cov=[%s])\n" % (", ".join(names), rows)
            body = " * ".join(fa.tp([names[i]]) for i, fs in enumerate(by_var) for fa in fs)
            self.add(cid, category, d, "one-factor-" + kind, decl + "report %s = avg(%s)\n" % (cid, body), cid, val,
                     err)

    def blocks(self, n):
        """Independent 2-d blocks: E prod = prod of 2-d expectations."""
        r = self.rng
        for t in range(n):
            nb = 2 + t % 3
            category = ("smooth", "kinked", "oscillating")[t % 3]
            cid = "b%03d" % len(self.cases)
            decl, fac_tp, val, err = "", [], 1.0, 0.0
            for k in range(nb):
                L = self.covariance_lower(2, "regular")
                cov = L @ L.T
                names = ["%s_%d_%d" % (cid, k, i) for i in range(2)]
                rows = ", ".join("[" + ", ".join(fmt(cov[i, j]) for j in range(2)) + "]" for i in range(2))
                decl += "vectors (%s) : gaussian(cov=[%s])\n" % (", ".join(names), rows)
                fnames = self.nonlin_list(category if k == 0 else "smooth", 2)
                facs = []
                for i, fn in enumerate(fnames):
                    c = np.zeros(2)
                    s, o = self.arg_scale(fn, math.sqrt(cov[i, i]))
                    c[i] = s
                    facs.append(Factor(fn, c, o))
                sm = any(fa.name in SQRT_KINK for fa in facs)
                v, e = two_resolutions(lambda h, q: expect_lower(L, facs, h, q, sm),
                                       self.rate(facs, np.sqrt(np.diag(cov))), sm)
                err = abs(val) * e + abs(v) * err + e * err
                val *= v
                fac_tp += [fa.tp(names) for fa in facs]
            self.add(cid, category, 2 * nb, "independent-blocks", decl + "report %s = avg(%s)\n" % (cid, " * ".join(fac_tp)),
                     cid, val, err)

    # --- Zdot programs ------------------------------------------------------------
    def zdot(self, n):
        """h = W @ x, z = W.T @ psi(h): Z^z = Zhat + a Z^x, a = s2 E[psi'(h)] = E[h psi(h)] / vx.
        Reports avg(chi(x) * zeta(z)) (Zhat independent of x, Var Zhat = s2 E psi(h)^2), and
        d = avg(h * (W @ rho(z))) = 2 s2 a vx E[rho'(z)], E[rho'(z)] = E[z rho(z)] / Var z."""
        r = self.rng
        psis = ["tanh", "relu", "step", "sign", "abs", "sigmoid", "gelu", "sin", "powabs", "erf", "softplus"]
        for t in range(n):
            cid = "z%03d" % len(self.cases)
            s2 = round(float(r.uniform(0.5, 2.0)), 3)
            vx = round(float(r.uniform(0.5, 2.0)), 3)
            psi = Factor(psis[t % len(psis)], [round(float(r.uniform(0.6, 1.5)), 3)], round(float(r.uniform(0.2, 0.6) * self.pick([-1, 1])), 3) if t % 4 else 0.0)
            vh = s2 * vx
            e_hpsi = mp_gauss1(lambda y: y * psi.at(y), vh, psi)
            e_psi2 = mp_gauss1(lambda y: psi.at(y) ** 2, vh, psi)
            a = e_hpsi / vx
            vzh = s2 * e_psi2
            category = "kinked" if NONLIN[psi.name][3] == "kinked" else "smooth"
            x, h, u, z = (cid + s for s in ("_x", "_h", "_u", "_z"))
            prog = ("matrix %s_W : gaussian(var=%s)\nvector %s : gaussian(var=%s)\n%s = %s_W @ %s\n%s = %s\n"
                    "%s = %s_W.T @ %s\n") % (cid, fmt(s2), x, fmt(vx), h, cid, x, u, psi.tp([h]), z, cid, u)
            if t % 3 == 2:
                rho = Factor(self.pick(psis), [round(float(r.uniform(0.5, 1.2)), 3)], 0.0)
                vz = vzh + a * a * vx
                e_zrho = mp_gauss1(lambda y: y * rho.at(y), vz, rho)
                val = 2 * s2 * a * vx * e_zrho / vz
                prog += "%s_w = %s_W @ %s\nreport %s = avg(%s * %s_w)\n" % (cid, cid, rho.tp([z]), cid, h, cid)
                if NONLIN[rho.name][3] == "kinked":
                    category = "kinked"
                err = 1e-13 * max(1, abs(val))
                self.add(cid, category, 2, "zdot-second-order", prog, cid, val, err,
                         "psi=%s rho=%s" % (psi.name, rho.name))
                continue
            chi = Factor(self.pick(["lin", "tanh", "relu", "sin", "poly2", "gelu", "abs"]), [round(float(r.uniform(0.5, 1.2)), 3)], 0.0)
            zeta = Factor(self.pick(["lin", "tanh", "relu", "cos", "step", "erf", "sigmoid"]), [round(float(r.uniform(0.5, 1.2)), 3)], 0.0)
            if NONLIN[chi.name][3] == "kinked" or NONLIN[zeta.name][3] == "kinked":
                category = "kinked"
            # one-factor: z0 = x / sqrt(vx); x = sqrt(vx) z0 (b = 0), z = a sqrt(vx) z0 + sqrt(vzh) z1
            sv = math.sqrt(vx)
            val, err = two_resolutions(
                lambda hh, q: expect_one_factor([sv, a * sv], [0.0, math.sqrt(vzh)], [[chi], [zeta]], hh, q,
                                                psi.name in SQRT_KINK),
                3.0, False)
            err += 1e-13 * max(1, abs(val))  # the 1-d coefficients a, vzh
            prog += "report %s = avg(%s * %s)\n" % (cid, chi.tp([x]), zeta.tp([z]))
            self.add(cid, category, 2, "zdot", prog, cid, val, err, "psi=%s chi=%s zeta=%s" % (psi.name, chi.name, zeta.name))

    def euler(self, n):
        """Input gradient of a bias-free 2-layer net with 1-homogeneous phi1, phi2:
        avg(x * dx) = avg(phi2(h2)) (Euler), E phi2(h2) by closed form."""
        r = self.rng
        acts = [("relu", "step"), ("abs", "sign"), ("leaky", "leaky'")]
        for t in range(n):
            cid = "e%03d" % len(self.cases)
            s1, s2, vx = (round(float(r.uniform(0.5, 2.5)), 3) for _ in range(3))
            (p1, d1), (p2, d2) = acts[t % 3], acts[(t // 3) % 3]
            al = 0.1

            def m2(p):  # E p(y)^2 / Var y
                return {"relu": 0.5, "abs": 1.0, "leaky": 0.5 * (1 + al * al)}[p]

            def m1(p):  # E p(y) / sd y
                return {"relu": 1 / math.sqrt(2 * math.pi), "abs": math.sqrt(2 / math.pi),
                        "leaky": (1 - al) / math.sqrt(2 * math.pi)}[p]

            v1 = s1 * vx
            v2 = s2 * m2(p1) * v1
            val = m1(p2) * math.sqrt(v2)

            def tp(p, arg):
                return {"relu": "relu(%s)", "abs": "abs(%s)", "leaky": "(relu(%s) - 0.1 * relu(-%s))"}[p].replace(
                    "%s", arg)

            def tpd(p, arg):
                return {"relu": "step(%s)", "abs": "sign(%s)", "leaky": "(step(%s) + 0.1 * step(-%s))"}[p].replace(
                    "%s", arg)

            x = cid + "_x"
            prog = ("matrix %s_W1 : gaussian(var=%s)\nmatrix %s_W2 : gaussian(var=%s)\nvector %s : gaussian(var=%s)\n"
                    "%s_h1 = %s_W1 @ %s\n%s_h2 = %s_W2 @ %s\n%s_g2 = %s\n%s_g1 = %s * (%s_W2.T @ %s_g2)\n"
                    "%s_dx = %s_W1.T @ %s_g1\nreport %s = avg(%s * %s_dx)\n") % (
                cid, fmt(s1), cid, fmt(s2), x, fmt(vx),
                cid, cid, x, cid, cid, tp(p1, cid + "_h1"), cid, tpd(p2, cid + "_h2"),
                cid, tpd(p1, cid + "_h1"), cid, cid,
                cid, cid, cid, cid, x, cid)
            self.add(cid, "kinked", 3, "zdot-euler", prog, cid, val, 1e-14 * max(1, val),
                     "phi1=%s phi2=%s" % (p1, p2))


def mp_breaks(fa, var):
    """Kinks of fa as points of a N(0, var) variable."""
    return [(k - fa.o) / fa.c[0] for k in fa.kinks()]


def mp_gauss1(fun, var, fa):
    """E fun(y), y ~ N(0, var), fun numpy-vectorized; Gauss-Legendre at two resolutions, and mpmath."""
    L = np.array([[math.sqrt(var)]])

    class F:  # adapter: fun as a Factor on g
        def __init__(self):
            self.c, self.o, self.name = np.array([1.0]), 0.0, fa.name

        def f(self, u):
            return fun(u)

        def kinks(self):
            return mp_breaks(fa, var)

    sm = fa.name in SQRT_KINK
    v, e = two_resolutions(lambda h, q: expect_lower(L, [F()], h, q, sm), 3.0, sm)
    mp = mp_quad(lambda y: float(fun(np.array(y))), var, F().kinks())
    if abs(mp - v) > 1e-11 * max(1, abs(v)):
        sys.exit("mpmath and Gauss-Legendre disagree: %r %r (%s c=%r o=%r var=%r)" % (mp, v, fa.name, fa.c, fa.o, var))
    return v


def mp_quad(fun, var, kinks):
    s = mpmath.sqrt(var)
    pts = sorted(set([-mpmath.inf] + [mpmath.mpf(k) / s for k in kinks] + [mpmath.inf]))
    dens = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)
    return float(mpmath.quad(lambda z: dens(z) * fun(float(s * z)), pts))


def mp_expect_1d(sd, terms):
    """1-d sum of products by mpmath (double-precision integrand, tanh-sinh rule)."""
    kinks = []
    for _, facs in terms:
        for fa in facs:
            kinks += [(k - fa.o) / fa.c[0] for k in fa.kinks()]
    fun = lambda g: sum(c * np.prod([fa.f(np.array(fa.c[0] * g + fa.o)) for fa in facs]) for c, facs in terms)
    return mp_quad(lambda g: float(fun(g)), sd * sd, kinks)


def main():
    mpmath.mp.dps = 20
    g = Gen(SEED)
    g.low_dim(150)
    g.one_factor(100)
    g.blocks(15)
    g.zdot(45)
    g.euler(9)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json")
    with open(out, "w") as f:
        json.dump({"generator": "tests/calibration/generate.py", "seed": SEED, "cases": g.cases}, f, indent=1)
    errs = [c["ref_error"] for c in g.cases]
    print("%d cases -> %s; largest reference error %.2g" % (len(g.cases), out, max(errs)))


if __name__ == "__main__":
    main()
