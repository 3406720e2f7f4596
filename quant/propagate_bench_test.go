package quant

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/gemm"
)

// cpuSeconds is the process's user+system CPU time: on a shared machine, wall time swings
// with the neighbours' load and CPU time much less.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkQLinearPropagate is the calibration's quantized propagation (issue 10): one
// QLinear.Forward over a whole calibration chunk (4096 rows, calib.DefaultChunkRows) at a
// LLaMA-2-7B MLP shape, static per-tensor activations as the default recipe's LAE linears,
// against the float GEMM of the same shape (the collect pass's cost), alternating within
// each iteration. ODYSSEY_BENCH_QLINEAR_SHAPE=ROWSxOUTxIN overrides the shape.
func BenchmarkQLinearPropagate(b *testing.B) {
	rows, out, in := 4096, 11008, 4096
	if s := os.Getenv("ODYSSEY_BENCH_QLINEAR_SHAPE"); s != "" {
		f := strings.Split(s, "x")
		if len(f) != 3 {
			b.Fatalf("ODYSSEY_BENCH_QLINEAR_SHAPE=%q, want ROWSxOUTxIN", s)
		}
		var err error
		for i, p := range []*int{&rows, &out, &in} {
			if *p, err = strconv.Atoi(f[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	wf := randWeights(out*in, 2)
	iw, err := RTNIntScale(wf, out, in, 128, RTNOptions{}, AmplifierRule{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := NewQLinear(iw, ActQuant{Policy: StaticPerTensor, Scale: 0.01}, nil)
	if err != nil {
		b.Fatal(err)
	}
	x := randWeights(rows*in, 3)
	y := make([]float32, rows*out)
	var qWall, fWall time.Duration
	var qCPU, fCPU float64
	b.ResetTimer()
	for b.Loop() {
		t0, c0 := time.Now(), cpuSeconds()
		l.Forward(y, x, rows)
		t1, c1 := time.Now(), cpuSeconds()
		gemm.Sgemm(false, true, rows, out, in, 1, x, in, wf, in, 0, y, out)
		qWall += t1.Sub(t0)
		fWall += time.Since(t1)
		qCPU += c1 - c0
		fCPU += cpuSeconds() - c1
	}
	n := float64(b.N)
	flop := 2 * float64(rows) * float64(out) * float64(in)
	b.ReportMetric(qWall.Seconds()/n, "qlinear-s")
	b.ReportMetric(fWall.Seconds()/n, "sgemm-s")
	b.ReportMetric(qCPU/n, "qlinear-cpu-s")
	b.ReportMetric(fCPU/n, "sgemm-cpu-s")
	b.ReportMetric(qCPU/fCPU, "cpu-ratio")
	b.ReportMetric(flop*n/qWall.Seconds()/1e9, "qlinear-GFLOP/s")
}
