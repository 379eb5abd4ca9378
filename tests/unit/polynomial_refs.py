#!/usr/bin/python3
# Reference values for the polynomial-direction tests in tests/unit/test_trust.cpp,
# computed outside netsor (run: /usr/bin/python3 tests/unit/polynomial_refs.py).
#
# 1. Lanczos on a Hessian-vector product. H = W^T D W with W square Gaussian
#    (entries N(0, 1/n)) and D = diag(v * tanh''(h)), v, h ~ N(0, 1) independent:
#    the Hessian in x of avg(v * tanh(W x)) (times n). W W^T is Marchenko-Pastur
#    of ratio 1, whose free cumulants are all 1, and D is asymptotically free from
#    it, so the moments of H are those of the free multiplicative convolution:
#        m_k(H) = sum over non-crossing partitions of prod_B m_|B|(D),
#    i.e. m_k(D) plays the role of the k-th free cumulant, and
#        m_k(D) = E[v^k] E[tanh''(h)^k]   (mpmath quadrature, 40 digits).
#    Lanczos from a vector independent of H converges to the Jacobi matrix of
#    the spectral law, whose coefficients follow from the moments by
#    Chebyshev's algorithm (Gautschi, "Orthogonal polynomials", 2.1.7).
# 2. E[tanh(g0 + g3 / 2) g1^3 g2^2 + cos(g3) g1^2 g2], g ~ N(0, S) (S below):
#    conditioned on (g0, g3), (g1, g2) is Gaussian; its moments come from the
#    moment generating function differentiated by sympy, and the outer 2-d
#    integral is scipy's dblquad.
import numpy as np
import mpmath as mp
import sympy as sp
from scipy import integrate

mp.mp.dps = 40


def hessian_lanczos(K=10):
    def tpp(x):
        t = mp.tanh(x)
        return -2 * t * (1 - t * t)

    def gauss(f):
        return mp.quad(lambda x: f(x) * mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi), [-mp.inf, -3, 0, 3, mp.inf])

    kappa = [mp.mpf(1)] + [(mp.fac2(j - 1) if j % 2 == 0 else 0) * gauss(lambda x: tpp(x) ** j)
                           for j in range(1, K + 1)]
    # Moments from free cumulants: m_k = sum_s kappa_s [z^(k-s)] (sum_i m_i z^i)^s.
    m = [mp.mpf(1)] + [mp.mpf(0)] * K
    for k in range(1, K + 1):
        total = mp.mpf(0)
        for s in range(1, k + 1):
            power = [mp.mpf(1)] + [mp.mpf(0)] * (k - s)
            for _ in range(s):
                power = [sum(power[a] * m[b - a] for a in range(b + 1)) for b in range(k - s + 1)]
            total += kappa[s] * power[k - s]
        m[k] = total
    # Chebyshev's algorithm: recurrence coefficients from the moments.
    n = K // 2
    alpha, beta = [m[1] / m[0]], [m[0]]
    prev, cur = [mp.mpf(0)] * (2 * n + 1), m[: 2 * n + 1]
    for k in range(1, n):
        nxt = [mp.mpf(0)] * (2 * n + 1)
        for l in range(k, 2 * n - k):
            nxt[l] = cur[l + 1] - alpha[k - 1] * cur[l] - beta[k - 1] * prev[l]
        alpha.append(nxt[k + 1] / nxt[k] - cur[k] / cur[k - 1])
        beta.append(nxt[k] / cur[k - 1])
        prev, cur = cur, nxt
    for k in range(1, n):
        print(f"hessian lanczos: alpha[{k}] = {mp.nstr(alpha[k - 1], 17)}  beta[{k}] = {mp.nstr(mp.sqrt(beta[k]), 17)}")


def correlated_polynomial():
    S = np.array([[1.0, 0.3, -0.2, 0.1],
                  [0.3, 1.5, 0.4, -0.3],
                  [-0.2, 0.4, 0.8, 0.2],
                  [0.1, -0.3, 0.2, 1.2]])
    o, p = [0, 3], [1, 2]
    Soo, Spo, Spp = S[np.ix_(o, o)], S[np.ix_(p, o)], S[np.ix_(p, p)]
    A = Spo @ np.linalg.inv(Soo)
    C = Spp - A @ Spo.T
    s1, s2, MX, MY = sp.symbols("s1 s2 mx my")
    mgf = sp.exp(s1 * MX + s2 * MY + (C[0, 0] * s1 ** 2 + 2 * C[0, 1] * s1 * s2 + C[1, 1] * s2 ** 2) / 2)
    E32 = sp.lambdify((MX, MY), sp.diff(mgf, s1, 3, s2, 2).subs({s1: 0, s2: 0}))
    E21 = sp.lambdify((MX, MY), sp.diff(mgf, s1, 2, s2, 1).subs({s1: 0, s2: 0}))
    Lo = np.linalg.cholesky(Soo)

    def f(a, b):  # (a, b): standard coordinates of (g0, g3)
        g0, g3 = Lo @ np.array([a, b])
        mx, my = A @ np.array([g0, g3])
        density = np.exp(-(a * a + b * b) / 2) / (2 * np.pi)
        return (np.tanh(g0 + 0.5 * g3) * E32(mx, my) + np.cos(g3) * E21(mx, my)) * density

    v, e = integrate.dblquad(lambda b, a: f(a, b), -12, 12, -12, 12, epsabs=1e-14, epsrel=1e-14)
    print(f"correlated polynomial: {v!r} (dblquad error {e:.1e})")


hessian_lanczos()
correlated_polynomial()
