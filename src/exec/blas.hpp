// The few BLAS/LAPACK routines the operator code uses, from the system's
// LAPACK (Debian: liblapack-dev; OpenBLAS behind it at run time). Eigen's own
// products are built for the baseline instruction set and are several times
// slower than OpenBLAS for the n x n products that dense spectra need.
#pragma once

#include <Eigen/Dense>
#include <vector>

namespace netsor::exec::blas {

// op(A) * B, op(A) = A or A^T.
Eigen::MatrixXd gemm(const Eigen::MatrixXd& A, bool transpose_a, const Eigen::MatrixXd& B);
// The lower triangle of X X^T (the upper is left zero).
Eigen::MatrixXd syrk_lower(const Eigen::MatrixXd& X);
// Eigenvalues, ascending, of a symmetric matrix whose lower triangle is set;
// A is overwritten.
std::vector<double> symmetric_eigenvalues(Eigen::MatrixXd& A);

}  // namespace netsor::exec::blas
