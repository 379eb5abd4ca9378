#!/usr/bin/python3
"""Independent references for programs/spectra/ridge_resolvent.tp (gamma = 0.5,
lam2 = 1): closed forms from the Marchenko-Pastur resolvent, and one Gaussian
integral by mpmath. Quoted in tests/e2e/test_free_probability_cli.cpp.

X in R^{m x n}, entries N(0, 1/n), gamma = m/n, R = inv(X X^T + lam I), u ~ N(0, I_m):
  s   = tr R, the positive root of gamma lam s^2 + (lam + 1 - gamma) s - 1 = 0
  r2  = tr R^2 = -ds/dlam = (gamma s^2 + s) / (2 gamma lam s + lam + 1 - gamma)
  q   = lim u^T R u / m = s
  g   = lim avg(u tanh(R u)) = s E[sech^2(N(0, r2))]   (Stein: Cov(u, Ru) = s, Var(Ru) = r2)
  r3  = lim |X^T R u|^2 / n = gamma tr(R^2 X X^T) = gamma (s - lam r2)
  c12 = lim (R u)^T (R2 u) / m = tr(R R2) = (s(lam) - s(lam2)) / (lam2 - lam)   (resolvent identity)
"""
import mpmath as mp

mp.mp.dps = 30


def refs(gamma, lam, lam2):
    def s_of(l):
        a, b = gamma * l, l + 1 - gamma
        return (-b + mp.sqrt(b * b + 4 * a)) / (2 * a)
    s = s_of(lam)
    r2 = (gamma * s * s + s) / (2 * gamma * lam * s + lam + 1 - gamma)
    sech2 = mp.quad(lambda z: mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi) / mp.cosh(mp.sqrt(r2) * z) ** 2, [-mp.inf, 0, mp.inf])
    return {"s": s, "q": s, "r2": r2, "g": s * sech2, "r3": gamma * (s - lam * r2), "c12": (s - s_of(lam2)) / (lam2 - lam)}


if __name__ == "__main__":
    for lam in (0.5, 0.3):
        print("lam = %g:" % lam, ", ".join("%s %s" % (k, mp.nstr(v, 17)) for k, v in refs(0.5, lam, 1.0).items()))
