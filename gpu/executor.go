package gpu

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// The model executor's commands, `odyssey-rt ppl` and `odyssey-rt speed`; docs/executor.md is
// the contract.

// GPU is the device an executor command ran on.
type GPU struct {
	Name        string  `json:"name"`
	CC          string  `json:"cc"`
	Driver      Version `json:"driver"`
	MemoryBytes int64   `json:"memory_bytes"`
}

// PPLAnswer is the answer of `odyssey-rt ppl`.
type PPLAnswer struct {
	OK     bool   `json:"ok"`
	Model  string `json:"model"`
	Path   string `json:"path"`
	Arch   string `json:"arch"`
	SeqLen int    `json:"seq_len"`
	// Windows is the number of windows scored; TokensScored Windows·(SeqLen−1).
	Windows      int `json:"windows"`
	TokensScored int `json:"tokens_scored"`
	Batch        int `json:"batch"`
	// KVCache is the KV cache the attention ran over: "fp16" or "int8" (empty from a runtime
	// older than the int8 cache, which had only fp16).
	KVCache      string    `json:"kv_cache"`
	NLLPerWindow []float64 `json:"nll_per_window"`
	NLLSum       float64   `json:"nll_sum"`
	Seconds      float64   `json:"seconds"`
	// TokensPerSecond is the runtime's own figure.
	TokensPerSecond float64 `json:"tokens_per_second"`
	GPU             GPU     `json:"gpu"`
	RuntimeVersion  string  `json:"runtime_version"`
	// TP is the tensor-parallel ranks the model was split over (1, or 0 from a runtime older
	// than --tp); with TP > 1 the all-reduce's codec (TPGroup 0 for the exact 16-bit sum) and
	// whether every rank returned the same NLLs (the runtime refuses to answer otherwise).
	TP               int  `json:"tp"`
	TPBits           int  `json:"tp_bits"`
	TPGroup          int  `json:"tp_group"`
	TPSymmetric      bool `json:"tp_symmetric"`
	TPRanksIdentical bool `json:"tp_ranks_identical"`
}

// PPLOptions are the flags of `odyssey-rt ppl`.
type PPLOptions struct {
	Model  string // the model folder
	Tokens string // a token windows file (WriteTokenWindows)
	Batch  int    // windows per forward pass; 0 = the runtime's default
	// KVCache: "fp16" or "int8" (int8 codes with an fp16 scale per token and kv head; the
	// prefill fake-quantizes k/v as decode will read them); "" leaves the runtime's default, fp16.
	KVCache string
	// TP > 1 splits the model over TP tensor-parallel ranks on the one GPU; TPBits 16 (exact),
	// 8 or 4 (the codec, groups of TPGroup, TPSymmetric).
	TP          int
	TPBits      int
	TPGroup     int
	TPSymmetric bool
}

// PPL runs `odyssey-rt ppl` and checks that its answer holds together: one finite NLL per
// window, tokens_scored = windows·(seq_len−1), and nll_sum the sum of the windows' NLLs.
// opts.Progress receives its progress in windows.
func PPL(ctx context.Context, opts RunOptions, path string, p PPLOptions) (*PPLAnswer, json.RawMessage, error) {
	args := []string{"ppl", "--model", p.Model, "--tokens", p.Tokens}
	if p.Batch > 0 {
		args = append(args, "--batch", strconv.Itoa(p.Batch))
	}
	if p.KVCache != "" {
		args = append(args, "--kv-cache", p.KVCache)
	}
	if p.TP > 1 {
		args = append(args, "--tp", strconv.Itoa(p.TP), "--tp-bits", strconv.Itoa(p.TPBits), "--tp-group", strconv.Itoa(p.TPGroup))
		if p.TPSymmetric {
			args = append(args, "--tp-sym")
		}
	}
	a, raw, err := runTyped[PPLAnswer](ctx, opts, path, args...)
	if err != nil {
		return nil, raw, err
	}
	if msg := a.check(); msg != "" {
		return nil, raw, &RuntimeError{Path: path, Args: args, Message: "answer does not hold together (docs/executor.md): " + msg}
	}
	return a, raw, nil
}

func (a *PPLAnswer) check() string {
	switch {
	case a.SeqLen < 2 || a.Windows < 1:
		return fmt.Sprintf("seq_len %d, windows %d", a.SeqLen, a.Windows)
	case len(a.NLLPerWindow) != a.Windows:
		return fmt.Sprintf("%d values in nll_per_window for %d windows", len(a.NLLPerWindow), a.Windows)
	case a.TokensScored != a.Windows*(a.SeqLen-1):
		return fmt.Sprintf("tokens_scored %d, but %d windows of %d score %d", a.TokensScored, a.Windows, a.SeqLen, a.Windows*(a.SeqLen-1))
	}
	var sum float64
	for i, v := range a.NLLPerWindow {
		// Each token's NLL is ≥ 0 in exact arithmetic; fp32 rounding may take a window of
		// near-certain tokens a hair below, never by a thousandth of a nat.
		if math.IsNaN(v) || math.IsInf(v, 0) || v < -1e-3 {
			return fmt.Sprintf("window %d has NLL %v (want a finite sum of non-negative NLLs)", i, v)
		}
		sum += v
	}
	// Summed in another order (or in fp64 from fp32 parts), the two may differ in the last
	// bits; a difference beyond 1e-9 relative is a runtime that lost or double-counted a window.
	if math.Abs(sum-a.NLLSum) > 1e-9*math.Max(1, math.Abs(sum)) {
		return fmt.Sprintf("nll_sum %v, but nll_per_window sums to %v", a.NLLSum, sum)
	}
	return ""
}

// SpeedRow is one (model, batch size) of `odyssey-rt speed`.
type SpeedRow struct {
	Model                string    `json:"model"`
	Path                 string    `json:"path"`
	Batch                int       `json:"batch"`
	KVCache              string    `json:"kv_cache"`
	Prompt               int       `json:"prompt"`
	Gen                  int       `json:"gen"`
	TTFTMs               float64   `json:"ttft_ms"`
	TTFTMsAll            []float64 `json:"ttft_ms_all"`
	DecodeTokensPerS     float64   `json:"decode_tokens_per_s"`
	DecodeMsPerStep      float64   `json:"decode_ms_per_step"`
	DecodeMsPerStepAll   []float64 `json:"decode_ms_per_step_all"`
	WeightBytes          float64   `json:"weight_bytes"`
	KVBytesPerToken      float64   `json:"kv_bytes_per_token"`
	MemoryFloorMsPerStep float64   `json:"memory_floor_ms_per_step"`
	FractionOfFloor      float64   `json:"fraction_of_floor"`
	GPUMemoryBytes       float64   `json:"gpu_memory_bytes"`
	// TokensHash is an FNV-1a of every generated token (greedy: the same text gives the same
	// hash); empty from a runtime older than it.
	TokensHash string `json:"tokens_hash"`
}

// SpeedAnswer is the answer of `odyssey-rt speed`.
type SpeedAnswer struct {
	OK             bool       `json:"ok"`
	RuntimeVersion string     `json:"runtime_version"`
	GPU            GPU        `json:"gpu"`
	CopyGBps       float64    `json:"copy_gbps"`
	Rows           []SpeedRow `json:"rows"`
}

// SpeedOptions are the flags of `odyssey-rt speed`; zero values leave the runtime's defaults.
type SpeedOptions struct {
	Model    string
	Baseline string
	Batch    string // "1,8,16"
	Prompt   int
	Gen      int
	Repeats  int
	// KVCache for Model: "fp16", "int8" or both ("fp16,int8": every batch size with each, one
	// load); the baseline keeps the fp16 cache. "" leaves the runtime's default, fp16.
	KVCache string
}

// Speed runs `odyssey-rt speed`. opts.Progress receives its progress in runs.
func Speed(ctx context.Context, opts RunOptions, path string, s SpeedOptions) (*SpeedAnswer, json.RawMessage, error) {
	args := speedArgs(s)
	a, raw, err := runTyped[SpeedAnswer](ctx, opts, path, args...)
	if err != nil {
		return nil, raw, err
	}
	if err := a.check(path, args); err != nil {
		return nil, raw, err
	}
	return a, raw, nil
}

func speedArgs(s SpeedOptions) []string {
	args := []string{"speed", "--model", s.Model}
	if s.Baseline != "" {
		args = append(args, "--baseline", s.Baseline)
	}
	if s.Batch != "" {
		args = append(args, "--batch", s.Batch)
	}
	if s.KVCache != "" {
		args = append(args, "--kv-cache", s.KVCache)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"--prompt", s.Prompt}, {"--gen", s.Gen}, {"--repeats", s.Repeats}} {
		if f.v > 0 {
			args = append(args, f.name, strconv.Itoa(f.v))
		}
	}
	return args
}

func (a *SpeedAnswer) check(path string, args []string) error {
	if len(a.Rows) == 0 {
		return &RuntimeError{Path: path, Args: args, Message: "answer has no rows (docs/executor.md)"}
	}
	for i, r := range a.Rows {
		if r.Batch < 1 || !(r.TTFTMs > 0) || !(r.DecodeMsPerStep > 0) || !(r.DecodeTokensPerS > 0) {
			return &RuntimeError{Path: path, Args: args, Message: fmt.Sprintf(
				"answer does not hold together (docs/executor.md): row %d (%s, batch %d) has ttft_ms %v, decode_ms_per_step %v, decode_tokens_per_s %v",
				i, r.Model, r.Batch, r.TTFTMs, r.DecodeMsPerStep, r.DecodeTokensPerS)}
		}
	}
	return nil
}
