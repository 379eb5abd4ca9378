#!/usr/bin/python3
# Reference values for tests/unit/test_free_probability.cpp, computed outside
# netsor with mpmath (run: /usr/bin/python3 tests/unit/free_probability_refs.py).
#
# Depth-1 tanh Jacobian: S = D W W^T D with W square, entries N(0, 1.5/n), and
# D = diag(tanh'(h)), h ~ N(0, 1.5). tr(S^k) = tr((A B)^k) for A = W W^T and
# B = D^2, asymptotically free; A is 1.5 times a Marchenko-Pastur law of ratio 1,
# whose free cumulants are all 1, so kappa_n(A) = 1.5^n. The moment-cumulant
# formula over non-crossing partitions and their Kreweras complements gives
#   m1 = k1 b1,  m2 = k2 b1^2 + k1^2 b2,  m3 = k3 b1^3 + 3 k2 k1 b2 b1 + k1^3 b3,
# with b_j = E[tanh'(h)^(2j)] = E[sech(h)^(4j)] by adaptive quadrature.
from mpmath import mp, quad, sech, sqrt, exp, pi, inf

mp.dps = 30
def E(k):
    return quad(lambda x: sech(sqrt(1.5) * x) ** (2 * k) * exp(-x * x / 2) / sqrt(2 * pi), [-inf, -3, 0, 3, inf])
b1, b2, b3 = E(2), E(4), E(6)
k1, k2, k3 = 1.5, 1.5 ** 2, 1.5 ** 3
print("tanh depth 1: m1 =", mp.nstr(k1 * b1, 17))
print("tanh depth 1: m2 =", mp.nstr(k2 * b1 ** 2 + k1 ** 2 * b2, 17))
print("tanh depth 1: m3 =", mp.nstr(k3 * b1 ** 3 + 3 * k2 * k1 * b2 * b1 + k1 ** 3 * b3, 17))

# Wigner plus a diagonal (Pastur): A = (W + W^T)/sqrt 2 + diag(tanh(x)), x ~ N(0, 1).
# G(z) = tr (z - A)^{-1} solves G = E[1 / (z - G - tanh(x))]; at z = -3 (left of
# the spectrum) G is real and tr(inv(A + 3 I)) = -G(-3). Fixed-point iteration
# with each expectation by mpmath quadrature.
def pastur(z):
    G = mp.mpf(1) / z
    for _ in range(200):
        G = quad(lambda x: exp(-x * x / 2) / sqrt(2 * pi) / (z - G - mp.tanh(x)), [-inf, 0, inf])
    return G
print("pastur: tr(inv(A + D + 3 I)) =", mp.nstr(-pastur(mp.mpf(-3)), 17))
