//go:build openblas && cgo

package openblas

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_num_threads(void);
*/
import "C"

import "unsafe"

// Sgemm is cblas_sgemm on row-major operands, with the gemm.Sgemm signature.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, C.enum_CBLAS_TRANSPOSE(ta), C.enum_CBLAS_TRANSPOSE(tb),
		C.blasint(m), C.blasint(n), C.blasint(k), C.float(alpha),
		(*C.float)(unsafe.Pointer(&a[0])), C.blasint(lda),
		(*C.float)(unsafe.Pointer(&b[0])), C.blasint(ldb), C.float(beta),
		(*C.float)(unsafe.Pointer(&c[0])), C.blasint(ldc))
}

// Info says which OpenBLAS kernel and thread count the comparison runs with.
func Info() (core, config string, threads int) {
	return C.GoString(C.openblas_get_corename()), C.GoString(C.openblas_get_config()), int(C.openblas_get_num_threads())
}
