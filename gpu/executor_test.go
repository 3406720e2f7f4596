package gpu

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestRunProgress: progress lines reach the callback, in order, also when split across
// writes; the other stderr lines (and a malformed progress line) reach Stderr and the tail,
// which keeps no progress line.
func TestRunProgress(t *testing.T) {
	needUnix(t)
	rt := fakeRT(t, `echo "loading model" >&2
printf 'progr' >&2; sleep 0.05; printf 'ess 1 4\nprogress 2 4\n' >&2
echo "progress 3 of 4" >&2
echo "progress 5 4" >&2
echo "progress 4 4" >&2
printf 'last words' >&2
echo '{"ok": false, "error": "boom"}'; exit 1`)
	var got [][2]int64
	var sb strings.Builder
	_, err := RunWith(context.Background(), RunOptions{Stderr: &sb, Progress: func(d, t int64) { got = append(got, [2]int64{d, t}) }}, rt, "ppl")
	var re *RuntimeError
	if !errors.As(err, &re) {
		t.Fatalf("error %v", err)
	}
	if want := [][2]int64{{1, 4}, {2, 4}, {4, 4}}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("progress %v, want %v", got, want)
	}
	wantErr := "loading model\nprogress 3 of 4\nprogress 5 4\nlast words"
	if sb.String() != wantErr {
		t.Errorf("streamed stderr %q, want %q", sb.String(), wantErr)
	}
	if strings.TrimPrefix(re.Stderr, "…") != wantErr {
		t.Errorf("tail %q, want %q", re.Stderr, wantErr)
	}
}

func TestParseProgress(t *testing.T) {
	for _, c := range []struct {
		line        string
		done, total int64
		ok          bool
	}{
		{"progress 3 10\n", 3, 10, true},
		{"progress 0 1", 0, 1, true},
		{"  progress  7 7 \r\n", 7, 7, true},
		{"progress 11 10", 0, 0, false},
		{"progress -1 10", 0, 0, false},
		{"progress 1 0", 0, 0, false},
		{"progress 1", 0, 0, false},
		{"progress 1 2 3", 0, 0, false},
		{"Progress 1 2", 0, 0, false},
		{"progress x 2", 0, 0, false},
	} {
		d, tot, ok := ParseProgress(c.line)
		if d != c.done || tot != c.total || ok != c.ok {
			t.Errorf("%q: %d %d %v", c.line, d, tot, ok)
		}
	}
}

// TestRunProgressLongLine: a line without a newline is not buffered without bound.
func TestRunProgressLongLine(t *testing.T) {
	var sb strings.Builder
	p := &progressLines{out: &sb, progress: func(int64, int64) { t.Error("called") }}
	chunk := strings.Repeat("x", 1000)
	for range 70 {
		p.Write([]byte(chunk))
	}
	if sb.Len() < maxStderrLine || len(p.partial) > maxStderrLine {
		t.Errorf("passed %d bytes, holds %d", sb.Len(), len(p.partial))
	}
	p.Flush()
	if sb.Len() != 70000 {
		t.Errorf("passed %d bytes of 70000", sb.Len())
	}
}

const pplAnswer = `{"ok": true, "model": "m", "path": "w4a8", "arch": "llama", "seq_len": 4, "windows": 2,
 "tokens_scored": 6, "batch": 2, "kv_cache": "int8", "nll_per_window": [1.5, 2.25], "nll_sum": 3.75, "seconds": 0.5,
 "tokens_per_second": 12, "gpu": {"name": "NVIDIA H200", "cc": "9.0", "driver": "580.65.06", "memory_bytes": 150000000000},
 "runtime_version": "0.2.0"}`

func TestPPL(t *testing.T) {
	needUnix(t)
	rt := fakeRT(t, `[ "$*" = "ppl --model /m --tokens /t.bin --batch 8 --kv-cache int8" ] || { echo "{\"ok\":false,\"error\":\"args: $*\"}"; exit 2; }
cat <<'EOF'
`+pplAnswer+`
EOF`)
	a, _, err := PPL(context.Background(), RunOptions{}, rt, PPLOptions{Model: "/m", Tokens: "/t.bin", Batch: 8, KVCache: "int8"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Path != "w4a8" || a.SeqLen != 4 || a.Windows != 2 || a.NLLPerWindow[1] != 2.25 || a.GPU.Name != "NVIDIA H200" ||
		a.GPU.Driver != "580.65.06" || a.RuntimeVersion != "0.2.0" || a.KVCache != "int8" {
		t.Errorf("answer %+v", a)
	}
	// Answers that do not hold together are refused, saying why.
	for _, c := range []struct{ from, to, want string }{
		{`"nll_sum": 3.75`, `"nll_sum": 5.0`, "nll_sum 5, but nll_per_window sums to 3.75"},
		{`"tokens_scored": 6`, `"tokens_scored": 8`, "tokens_scored 8, but 2 windows of 4 score 6"},
		{`[1.5, 2.25]`, `[3.75]`, "1 values in nll_per_window for 2 windows"},
		{`"windows": 2`, `"windows": "2"`, "does not match the protocol"},
	} {
		bad := strings.Replace(pplAnswer, c.from, c.to, 1)
		rt := fakeRT(t, "cat <<'EOF'\n"+bad+"\nEOF")
		_, _, err := PPL(context.Background(), RunOptions{}, rt, PPLOptions{Model: "/m", Tokens: "/t.bin"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s → %s: error %v, want %q", c.from, c.to, err, c.want)
		}
	}
}

func TestSpeed(t *testing.T) {
	needUnix(t)
	row := `{"model": "/q", "path": "w4a8", "batch": 1, "prompt": 16, "gen": 8, "ttft_ms": 2.5, "ttft_ms_all": [2.5, 2.6, 2.4],
 "decode_tokens_per_s": 500, "decode_ms_per_step": 2, "decode_ms_per_step_all": [2, 2, 2], "weight_bytes": 3.6e9,
 "kv_bytes_per_token": 524288, "memory_floor_ms_per_step": 1.0, "fraction_of_floor": 0.5, "gpu_memory_bytes": 5.1e9}`
	rt := fakeRT(t, `[ "$*" = "speed --model /q --baseline /f --batch 1,8 --kv-cache fp16,int8 --prompt 16 --gen 8 --repeats 3" ] || { echo "{\"ok\":false,\"error\":\"args: $*\"}"; exit 2; }
cat <<'EOF'
{"ok": true, "runtime_version": "0.2.0", "gpu": {"name": "NVIDIA H200"}, "copy_gbps": 4080, "rows": [`+row+`]}
EOF`)
	a, _, err := Speed(context.Background(), RunOptions{}, rt, SpeedOptions{Model: "/q", Baseline: "/f", Batch: "1,8", Prompt: 16, Gen: 8, Repeats: 3, KVCache: "fp16,int8"})
	if err != nil {
		t.Fatal(err)
	}
	if a.CopyGBps != 4080 || len(a.Rows) != 1 || a.Rows[0].WeightBytes != 3.6e9 || a.Rows[0].FractionOfFloor != 0.5 || len(a.Rows[0].TTFTMsAll) != 3 {
		t.Errorf("answer %+v", a)
	}
	for _, c := range []struct{ body, want string }{
		{`echo '{"ok": true, "rows": []}'`, "no rows"},
		{`echo '{"ok": true, "rows": [{"model": "/q", "batch": 1, "ttft_ms": 0, "decode_ms_per_step": 1, "decode_tokens_per_s": 1}]}'`, "row 0 (/q, batch 1) has ttft_ms 0"},
	} {
		if _, _, err := Speed(context.Background(), RunOptions{}, fakeRT(t, c.body), SpeedOptions{Model: "/q"}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}
