package main

// BenchmarkQuantizeSynth7B measures the quantize command end to end, in process, on a
// 2-layer LLaMA-2-7B-shaped random checkpoint (odyssey testdata synth, fp16, 1.33 GB) with the
// w4a8-rtn recipe (round-to-nearest int4 g128 weights with integer scales, per-token
// activations: no calibration), as a user runs it, and reports GB/s of fp16 input. Beside it,
// in the same run, it measures what bounds it: the disk's write bandwidth with fsync (the
// artifact is 0.73 GB) and without. Each iteration starts from a clean page cache state
// (sync(2) first, so write-back of the previous iteration does not slow this one), writes to
// a fresh folder, and is timed as a whole; use -count for repeated runs and benchstat or the
// median of them.
//
// It needs about 4 GB of free disk space and a minute, so it runs only when
// ODYSSEY_BENCH_QUANTIZE=1:
//
//	ODYSSEY_BENCH_QUANTIZE=1 go test ./cmd/odyssey -run XXX -bench QuantizeSynth7B -benchtime 5x -count 3
//
// Results (2026-12-02, this project's CI-like machine: 2 cores of an AMD EPYC with AVX2, no
// AVX-512, a virtual disk) are in ptq/THROUGHPUT.md.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func BenchmarkQuantizeSynth7B(b *testing.B) {
	if os.Getenv("ODYSSEY_BENCH_QUANTIZE") != "1" {
		b.Skip("set ODYSSEY_BENCH_QUANTIZE=1 to run (writes about 4 GB)")
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "llama2-7b-2l")
	var so, se bytes.Buffer
	if code := run([]string{"testdata", "synth", "--shape", "llama2-7b", "--layers", "2", "--out", src}, strings.NewReader(""), &so, &se); code != 0 {
		b.Fatalf("synth: exit %d: %s", code, se.String())
	}
	for _, mode := range []struct {
		name  string
		extra []string
	}{{"fsync", nil}, {"no-sync", []string{"--no-sync"}}} {
		b.Run(mode.name, func(b *testing.B) {
			var rep quantizeReport
			i := 0
			for b.Loop() {
				b.StopTimer()
				out := filepath.Join(dir, fmt.Sprintf("out-%d", i))
				i++
				syscall.Sync()
				b.StartTimer()
				var stdout, stderr bytes.Buffer
				args := append([]string{"quantize", "--model", src, "--out", out, "--recipe", "w4a8-rtn", "--json"}, mode.extra...)
				if code := run(args, strings.NewReader(""), &stdout, &stderr); code != 0 {
					b.Fatalf("quantize: exit %d: %s", code, stderr.String())
				}
				b.StopTimer()
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
					b.Fatal(err)
				}
				os.RemoveAll(out)
				b.StartTimer()
			}
			b.ReportMetric(float64(rep.FP16BytesIn)/1e9/(b.Elapsed().Seconds()/float64(b.N)), "GB/s")
			b.ReportMetric(float64(rep.PeakRSSBytes)/(1<<30), "peakRSS-GiB")
			b.ReportMetric(0, "ns/op")
		})
	}
	// The hardware limits beside it: writing the artifact's size to this disk, with and
	// without fsync.
	for _, fsync := range []bool{true, false} {
		name := "disk-write-0.73GB"
		if fsync {
			name += "-fsync"
		}
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 8<<20)
			const total = 733 << 20
			for b.Loop() {
				b.StopTimer()
				syscall.Sync()
				p := filepath.Join(dir, "disk-test")
				b.StartTimer()
				f, err := os.Create(p)
				if err != nil {
					b.Fatal(err)
				}
				for n := 0; n < total; n += len(buf) {
					if _, err := f.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				if fsync {
					f.Sync()
				}
				f.Close()
				b.StopTimer()
				os.Remove(p)
				b.StartTimer()
			}
			b.ReportMetric(float64(total)/1e9/(b.Elapsed().Seconds()/float64(b.N)), "GB/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}
