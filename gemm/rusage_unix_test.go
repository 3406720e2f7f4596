//go:build unix

package gemm

import "syscall"

// cpuSeconds is the process's user+system CPU time. On this shared machine wall-clock
// GFLOP/s swings with the neighbours' load; FLOPs per CPU-second do not (much), so the
// benchmarks report both.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
