package gpu

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
)

// The protocol tests run a fake odyssey-rt: a shell script that prints canned output. They
// need /bin/sh and Unix process groups, so they skip elsewhere.
func needUnix(t *testing.T) {
	t.Helper()
	if goruntime.GOOS == "windows" || goruntime.GOOS == "plan9" {
		t.Skip("fake runtimes are shell scripts")
	}
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func fakeRT(t *testing.T, body string) string {
	return writeScript(t, t.TempDir(), "odyssey-rt", body)
}

const infoJSON = `{"ok": true, "runtime_version": "0.1.0", "cuda_runtime": 12040, "cuda_driver": "12.6",
 "devices": [{"index": 0, "name": "NVIDIA H200", "cc": "9.0", "sms": 132, "memory_bytes": 150000000000,
 "l2_bytes": 52428800, "clock_khz": 1980000, "mem_clock_khz": 3201000, "bus_width": 6144}]}`

func TestRunInfo(t *testing.T) {
	needUnix(t)
	rt := fakeRT(t, `[ "$1" = info ] || { echo '{"ok":false,"error":"bad args"}'; exit 2; }
echo "probing devices" >&2
cat <<'EOF'
`+infoJSON+`
EOF`)
	info, raw, err := GetInfo(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) || info.RuntimeVersion != "0.1.0" || info.CUDARuntime.String() != "12.4" || info.CUDADriver.String() != "12.6" ||
		len(info.Devices) != 1 || info.Devices[0].Name != "NVIDIA H200" || info.Devices[0].CC != "9.0" ||
		info.Devices[0].SMs != 132 || info.Devices[0].MemoryBytes != 150000000000 || info.Devices[0].BusWidth != 6144 {
		t.Errorf("info = %+v", info)
	}
}

func TestRunTestAndBench(t *testing.T) {
	needUnix(t)
	rt := fakeRT(t, `case "$1 $2" in
"test gemm") [ "$3" = --cases ] && [ -n "$4" ] || exit 3
  echo '{"ok":true,"cases":[{"name":"a","kernel":"fastgemm","passed":true,"acc_mismatches":0,"y_max_ulp":0,"message":""},
  {"name":"b","kernel":"fastgemm","passed":false,"acc_mismatches":3,"y_max_ulp":1.5,"message":"acc differs"}],"passed":1,"failed":1}'
  exit 1 ;;
"bench gemm") [ "$3 $4 $5 $6" = "--shapes 4096x4096 --m 1,16" ] || exit 3
  echo '{"ok":true,"gpu":"NVIDIA H200","driver":"560.35","cuda":"12.6","copy_bandwidth_gbs":4100.5,
  "rows":[{"n":4096,"k":4096,"m":1,"kernel":"fastgemm","us":5.1,"tops":6.6,"gbs":1650,"pct_memory_floor":40.2,"pct_peak":0.3}]}' ;;
*) exit 3 ;;
esac`)
	// A failing case exits 1 but still answers "ok": true with every case: the answer counts.
	res, _, err := TestGEMM(context.Background(), RunOptions{}, rt, "/some/dir")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cases) != 2 || res.Passed != 1 || res.Failed != 1 || res.Cases[1].AccMismatches != 3 || res.Cases[1].YMaxULP != 1.5 {
		t.Errorf("test = %+v", res)
	}
	b, _, err := BenchGEMM(context.Background(), RunOptions{}, rt, BenchOptions{Shapes: "4096x4096", M: "1,16"})
	if err != nil {
		t.Fatal(err)
	}
	if b.GPU != "NVIDIA H200" || b.CopyBandwidthGBs != 4100.5 || len(b.Rows) != 1 || b.Rows[0].US != 5.1 || b.Rows[0].PctMemoryFloor != 40.2 {
		t.Errorf("bench = %+v", b)
	}
}

func runErr(t *testing.T, ctx context.Context, body string) (*RuntimeError, time.Duration) {
	t.Helper()
	rt := fakeRT(t, body)
	start := time.Now()
	_, err := Run(ctx, rt, "info")
	took := time.Since(start)
	var re *RuntimeError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T), want *RuntimeError", err, err)
	}
	return re, took
}

func TestRunFailures(t *testing.T) {
	needUnix(t)
	ctx := context.Background()
	cases := []struct {
		name, body string
		want       []string
		code       int
	}{
		{"ok false", `echo "cudaGetDeviceCount: no CUDA-capable device is detected" >&2
echo '{"ok": false, "error": "no CUDA device"}'; exit 1`,
			[]string{"odyssey-rt info: no CUDA device", "exit status 1", "no CUDA-capable device is detected"}, 1},
		{"ok false exit 0", `echo '{"ok": false, "error": "refused"}'`, []string{"refused"}, 0},
		{"garbage", `echo 'Segmentation fault'; exit 139`, []string{"exit status 139", "other than a JSON object", "Segmentation fault"}, 139},
		{"nothing", `exit 0`, []string{"printed nothing"}, 0},
		{"no ok", `echo '{"devices": []}'`, []string{`without a boolean "ok"`}, 0},
		{"two objects", `echo '{"ok": true}'; echo '{"ok": true}'`, []string{"more than one JSON object"}, 0},
		{"array", `echo '[1, 2]'`, []string{"other than a JSON object"}, 0},
		{"ok false, no message", `echo '{"ok": false}'; exit 4`, []string{"failed without a message"}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			re, _ := runErr(t, ctx, c.body)
			for _, w := range c.want {
				if !strings.Contains(re.Error(), w) {
					t.Errorf("error %q lacks %q", re.Error(), w)
				}
			}
			if re.ExitCode != c.code {
				t.Errorf("exit code %d, want %d", re.ExitCode, c.code)
			}
		})
	}
}

// TestRunTimeout: a runtime that hangs is killed at the deadline, with its children (the
// sleep holds the stdout pipe; without the process group Run would wait for it).
func TestRunTimeout(t *testing.T) {
	needUnix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	re, took := runErr(t, ctx, `echo "initialising" >&2; sleep 30; echo '{"ok": true}'`)
	if !errors.Is(re, context.DeadlineExceeded) || !strings.Contains(re.Error(), "timed out") || !strings.Contains(re.Error(), "initialising") {
		t.Errorf("error %v", re)
	}
	if took > 10*time.Second {
		t.Errorf("took %v to give up", took)
	}
}

// TestRunHugeOutput: a runtime that never stops printing is killed once past MaxOutput.
func TestRunHugeOutput(t *testing.T) {
	needUnix(t)
	re, took := runErr(t, context.Background(), `exec yes '{"ok": true}'`)
	if !strings.Contains(re.Error(), "more than 64 MiB") {
		t.Errorf("error %v", re)
	}
	if took > 30*time.Second {
		t.Errorf("took %v", took)
	}
}

func TestRunStderrTailAndEnv(t *testing.T) {
	needUnix(t)
	t.Setenv("NCCL_NVLS_ENABLE", "1")
	rt := fakeRT(t, `echo "{\"ok\": true, \"nvls\": \"$NCCL_NVLS_ENABLE\"}"`)
	raw, err := Run(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ NVLS string }
	if json.Unmarshal(raw, &v); v.NVLS != "0" {
		t.Errorf("child saw NCCL_NVLS_ENABLE=%q", v.NVLS)
	}
	// 20 000 bytes of stderr: the error keeps the end, about 4 KiB.
	re, _ := runErr(t, context.Background(), `i=0; while [ $i -lt 2000 ]; do echo "line $i" >&2; i=$((i+1)); done
echo "the real error" >&2; echo '{"ok":false,"error":"x"}'; exit 1`)
	if !strings.Contains(re.Stderr, "the real error") || strings.Contains(re.Stderr, "line 1\n") || len(re.Stderr) > stderrTail+8 {
		t.Errorf("stderr tail (%d bytes) %q…", len(re.Stderr), clip([]byte(re.Stderr), 80))
	}
	// Streaming stderr as well.
	var sb strings.Builder
	if _, err := RunWith(context.Background(), RunOptions{Stderr: &sb}, fakeRT(t, `echo progress >&2; echo '{"ok":true}'`)); err != nil || sb.String() != "progress\n" {
		t.Errorf("streamed %q, %v", sb.String(), err)
	}
}

func TestRunNotStartable(t *testing.T) {
	_, err := Run(context.Background(), filepath.Join(t.TempDir(), "missing"))
	var re *RuntimeError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "could not start") {
		t.Errorf("error %v", err)
	}
}

func TestFind(t *testing.T) {
	needUnix(t)
	tmp := t.TempDir()
	exe := writeScript(t, tmp, "odyssey-rt", "true")
	notExe := filepath.Join(tmp, "plain")
	os.WriteFile(notExe, nil, 0o644)
	none := func() (string, error) { return "", errors.New("none") }
	base := finder{
		getenv:     func(string) string { return "" },
		getwd:      func() (string, error) { return filepath.Join(tmp, "cwd"), nil },
		executable: func() (string, error) { return filepath.Join(tmp, "bin", "odyssey"), nil },
		lookPath:   func(string) (string, error) { return "", errors.New("not in PATH") },
	}

	if p, err := base.find(exe); err != nil || p != exe {
		t.Errorf("explicit: %q, %v", p, err)
	}
	if _, err := base.find(notExe); !errors.Is(err, ErrBadPath) || !strings.Contains(err.Error(), "--runtime="+notExe) {
		t.Errorf("explicit, not executable: %v", err)
	}
	env := base
	env.getenv = func(k string) string {
		if k == EnvRuntime {
			return filepath.Join(tmp, "nope")
		}
		return ""
	}
	if _, err := env.find(""); !errors.Is(err, ErrBadPath) || !strings.Contains(err.Error(), "ODYSSEY_RT=") {
		t.Errorf("ODYSSEY_RT wrong: %v", err)
	}

	// Nothing anywhere: the error names every place and the fix.
	_, err := base.find("")
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("error %v", err)
	}
	for _, w := range []string{filepath.Join(tmp, "cwd", "runtime", "build", "odyssey-rt"), filepath.Join(tmp, "bin", "odyssey-rt"),
		"$PATH", "odyssey runtime build", "nvcc", "CMake ≥ 3.24", "ODYSSEY_RT"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("not-found error lacks %q: %v", w, err)
		}
	}

	// A checkout: go.mod of this module with runtime/build/odyssey-rt, cwd deep inside it,
	// and separately the executable inside it.
	repo := filepath.Join(tmp, "repo")
	os.MkdirAll(filepath.Join(repo, "runtime", "build"), 0o755)
	os.MkdirAll(filepath.Join(repo, "cmd", "odyssey"), 0o755)
	os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module "+modulePath+"\n\ngo 1.26\n"), 0o644)
	built := writeScript(t, filepath.Join(repo, "runtime", "build"), "odyssey-rt", "true")
	inRepo := base
	inRepo.getwd = func() (string, error) { return filepath.Join(repo, "cmd", "odyssey"), nil }
	if p, err := inRepo.find(""); err != nil || p != built {
		t.Errorf("from inside the checkout: %q, %v", p, err)
	}
	exeInRepo := base
	exeInRepo.executable = func() (string, error) { return filepath.Join(repo, "bin", "odyssey"), nil }
	if p, err := exeInRepo.find(""); err != nil || p != built {
		t.Errorf("executable in the checkout: %q, %v", p, err)
	}
	// Beside the executable.
	beside := base
	beside.executable = func() (string, error) { return filepath.Join(tmp, "odyssey"), nil }
	if p, err := beside.find(""); err != nil || p != exe {
		t.Errorf("beside the executable: %q, %v", p, err)
	}
	// $PATH last.
	inPath := base
	inPath.executable = none
	inPath.lookPath = func(string) (string, error) { return "/opt/bin/odyssey-rt", nil }
	if p, err := inPath.find(""); err != nil || p != "/opt/bin/odyssey-rt" {
		t.Errorf("PATH: %q, %v", p, err)
	}
	// Another module's go.mod is not a checkout of this one.
	os.WriteFile(filepath.Join(repo, "go.mod"), []byte("module example.com/other\n"), 0o644)
	if _, err := inRepo.find(""); !errors.As(err, &nf) {
		t.Errorf("other module: %v", err)
	}
}

func TestVersion(t *testing.T) {
	var v struct{ A, B, C Version }
	if err := json.Unmarshal([]byte(`{"A": 12040, "B": "12.6", "C": "560.35.03"}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.A.String() != "12.4" || v.B.String() != "12.6" || v.C.String() != "560.35.03" {
		t.Errorf("%v %v %v", v.A, v.B, v.C)
	}
	if err := json.Unmarshal([]byte(`{"A": [1]}`), &v); err == nil {
		t.Error("an array accepted as a version")
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 8}
	tb.Write([]byte("abc"))
	if tb.String() != "abc" {
		t.Error(tb.String())
	}
	tb.Write([]byte("defghij"))
	if tb.String() != "…cdefghij" {
		t.Error(tb.String())
	}
	tb.Write([]byte("0123456789"))
	if tb.String() != "…23456789" {
		t.Error(tb.String())
	}
}
