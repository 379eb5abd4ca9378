// BLAS/LAPACK through their Fortran interfaces (src/exec/blas.hpp). The
// trailing size_t arguments are the hidden lengths of the character arguments.
#include "blas.hpp"

#include <stdexcept>
#include <string>

extern "C" {
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc, std::size_t, std::size_t);
void dsyrk_(const char* uplo, const char* trans, const int* n, const int* k, const double* alpha, const double* a,
            const int* lda, const double* beta, double* c, const int* ldc, std::size_t, std::size_t);
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w, double* work,
             const int* lwork, int* iwork, const int* liwork, int* info, std::size_t, std::size_t);
}

namespace netsor::exec::blas {

Eigen::MatrixXd gemm(const Eigen::MatrixXd& A, bool transpose_a, const Eigen::MatrixXd& B) {
  int m = int(transpose_a ? A.cols() : A.rows()), k = int(transpose_a ? A.rows() : A.cols());
  int n = int(B.cols()), lda = std::max<int>(1, int(A.rows())), ldb = std::max(1, k), ldc = std::max(1, m);
  Eigen::MatrixXd C(m, n);
  if (m == 0 || n == 0) return C;
  if (k == 0) return Eigen::MatrixXd::Zero(m, n);
  const double one = 1, zero = 0;
  dgemm_(transpose_a ? "T" : "N", "N", &m, &n, &k, &one, A.data(), &lda, B.data(), &ldb, &zero, C.data(), &ldc, 1,
         1);
  return C;
}

Eigen::MatrixXd syrk_lower(const Eigen::MatrixXd& X) {
  int n = int(X.rows()), k = int(X.cols()), lda = std::max(1, n);
  Eigen::MatrixXd G = Eigen::MatrixXd::Zero(n, n);
  const double one = 1, zero = 0;
  if (n > 0 && k > 0) dsyrk_("L", "N", &n, &k, &one, X.data(), &lda, &zero, G.data(), &lda, 1, 1);
  return G;
}

std::vector<double> symmetric_eigenvalues(Eigen::MatrixXd& A) {
  int n = (int)A.rows(), lda = std::max(1, n), lwork = -1, liwork = -1, info = 0, iwq = 0;
  double wq = 0;
  std::vector<double> w(n);
  if (n == 0) return w;
  dsyevd_("N", "L", &n, A.data(), &lda, w.data(), &wq, &lwork, &iwq, &liwork, &info, 1, 1);
  lwork = std::max(1, (int)wq);
  liwork = std::max(1, iwq);
  std::vector<double> work(lwork);
  std::vector<int> iwork(liwork);
  dsyevd_("N", "L", &n, A.data(), &lda, w.data(), work.data(), &lwork, iwork.data(), &liwork, &info, 1, 1);
  if (info != 0) throw std::runtime_error("LAPACK dsyevd failed (info " + std::to_string(info) + ")");
  return w;
}

}  // namespace netsor::exec::blas
