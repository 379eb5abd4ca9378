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
# 2. programs/spectra/tanh_jacobian.tp (depth 3, sigma_w^2 = 1.5): m[k] = avg(v * S^k v)
#    with S = J J^T, the k-th moment of S's limit law. The layers' W W^T (1.5 times
#    Marchenko-Pastur of ratio 1) and D_l^2 = diag(sech(h_l)^4) are asymptotically
#    free, so S's S-transform is the product of theirs (Voiculescu); each S-transform
#    to second order from three moments, by series inversion (sympy), with
#    Var h_1 = 1.5 and Var h_(l+1) = 1.5 E tanh(h_l)^2 (mpmath).
# 3. E[tanh(u) g1^3 g2^2 + sin(u) g1^2 g2], u = g0 + g3 / 2, g ~ N(0, S) (S below):
#    conditioned on u, (g1, g2) is Gaussian; its moments come from the moment
#    generating function differentiated by sympy, and the outer 1-d integral is
#    scipy's quad.
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


def tanh_jacobian_moments(L=3, SW=mp.mpf("1.5")):
    def gauss(f, q):
        return mp.quad(lambda x: f(mp.sqrt(q) * x) * mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi),
                       [-mp.inf, -4, 0, 4, mp.inf])

    q = [SW]
    for _ in range(L - 1):
        q.append(SW * gauss(lambda x: mp.tanh(x) ** 2, q[-1]))
    w, z, a1, a2, a3 = sp.symbols("w z a1 a2 a3")

    def truncate(e, order):
        return sp.expand(sp.series(e, w, 0, order).removeO())

    def s_transform(m):  # from moments m1..m3: chi = psi^{-1}, S = chi (1 + w) / w
        m1, m2, m3 = [sp.Float(str(x), 30) for x in m]
        chi = w / m1 - m2 * w ** 2 / m1 ** 3 + (2 * m2 ** 2 - m1 * m3) * w ** 3 / m1 ** 5
        return truncate(chi * (1 + w) / w, 3)

    S = sp.Integer(1)
    for l in range(L):
        S = truncate(S * s_transform([gauss(lambda x: mp.sech(x) ** (4 * k), q[l]) for k in (1, 2, 3)]), 3)
        S = truncate(S * s_transform([SW, 2 * SW ** 2, 5 * SW ** 3]), 3)
    chi = truncate(S * w / (1 + w), 4)
    # psi = a1 z + a2 z^2 + a3 z^3 with chi(psi(z)) = z, order by order
    c = sp.Poly(sp.series(sp.expand(chi.subs(w, a1 * z + a2 * z ** 2 + a3 * z ** 3)), z, 0, 4).removeO(), z)
    c = c.all_coeffs()[::-1]
    m1 = sp.solve(sp.Eq(c[1], 1), a1)[0]
    m2 = sp.solve(sp.Eq(c[2].subs(a1, m1), 0), a2)[0]
    m3 = sp.solve(sp.Eq(c[3].subs({a1: m1, a2: m2}), 0), a3)[0]
    print("tanh jacobian: m[1..3] =", *(sp.N(x, 17) for x in (m1, m2, m3)))


def correlated_polynomial():
    S = np.array([[1.0, 0.3, -0.2, 0.1],
                  [0.3, 1.5, 0.4, -0.3],
                  [-0.2, 0.4, 0.8, 0.2],
                  [0.1, -0.3, 0.2, 1.2]])
    # (u, g1, g2) with u = g0 + g3 / 2: condition (g1, g2) on u.
    T = np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0]])
    K = T @ S @ T.T
    A = K[1:, 0] / K[0, 0]
    C = K[1:, 1:] - np.outer(A, A) * K[0, 0]
    s1, s2, MX, MY = sp.symbols("s1 s2 mx my")
    mgf = sp.exp(s1 * MX + s2 * MY + (C[0, 0] * s1 ** 2 + 2 * C[0, 1] * s1 * s2 + C[1, 1] * s2 ** 2) / 2)
    E32 = sp.lambdify((MX, MY), sp.diff(mgf, s1, 3, s2, 2).subs({s1: 0, s2: 0}))
    E21 = sp.lambdify((MX, MY), sp.diff(mgf, s1, 2, s2, 1).subs({s1: 0, s2: 0}))
    su = np.sqrt(K[0, 0])

    def f(a):  # a: the standard coordinate of u
        u = su * a
        mx, my = A * u
        return (np.tanh(u) * E32(mx, my) + np.sin(u) * E21(mx, my)) * np.exp(-a * a / 2) / np.sqrt(2 * np.pi)

    v, e = integrate.quad(f, -40, 40, epsabs=1e-15, epsrel=1e-15, limit=400)
    print(f"correlated polynomial: {v!r} (quad error {e:.1e})")


hessian_lanczos()
tanh_jacobian_moments()
correlated_polynomial()
