// Package openblas binds OpenBLAS's cblas_sgemm through cgo, for gemm's side-by-side
// benchmark only (gemm/openblas_test.go). Its code is behind the build tags openblas and cgo,
// so without them this package is empty and the module builds with CGO_ENABLED=0; it has to
// be a package of its own because Go refuses cgo in a package with Go assembly (gemm) and in
// _test.go files.
package openblas
