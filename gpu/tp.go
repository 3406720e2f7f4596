package gpu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// TPRun is a tensor-parallel run of the runtime over NCCL: N processes, rank r on GPUs[r] (its
// CUDA_VISIBLE_DEVICES), joined through a unique-id file that rank 0 writes (docs/executor.md,
// `odyssey-rt speed --tp`). The all-reduce after o_proj and down_proj is ncclAllReduce (Bits 16)
// or the compressed one (8 or 4, groups of Group, Symmetric); all-reduces of fewer than
// Threshold values take plain NCCL. Timeout is each rank's watchdog: a rank whose peer died
// ends with a message after it.
type TPRun struct {
	N         int
	Bits      int
	Group     int
	Symmetric bool
	Threshold int64
	GPUs      []string
	Timeout   time.Duration
}

func (t TPRun) args(rank int, uidFile string) []string {
	a := []string{"--tp", strconv.Itoa(t.N), "--rank", strconv.Itoa(rank), "--uid-file", uidFile,
		"--tp-bits", strconv.Itoa(t.Bits), "--tp-group", strconv.Itoa(t.Group),
		"--tp-threshold", strconv.FormatInt(t.Threshold, 10)}
	if t.Symmetric {
		a = append(a, "--tp-sym")
	}
	if t.Timeout > 0 {
		a = append(a, "--timeout", strconv.Itoa(max(1, int(t.Timeout.Seconds()))))
	}
	return a
}

// runRanks runs `path args… <rank flags>` once per rank, concurrently, and returns every rank's
// answer. Rank 0 carries opts' Stderr and Progress; the others keep their stderr for errors
// only. When a rank fails the others are stopped, and the first failure is returned, naming
// its rank (the others' errors would only say they were interrupted).
func runRanks(ctx context.Context, opts RunOptions, path string, t TPRun, args []string) ([]json.RawMessage, error) {
	if t.N < 1 || len(t.GPUs) != t.N {
		return nil, fmt.Errorf("tensor parallelism %d needs %d GPUs, %d given", t.N, t.N, len(t.GPUs))
	}
	dir, err := os.MkdirTemp("", "odyssey-tp-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	uid := filepath.Join(dir, "nccl-uid")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	raws := make([]json.RawMessage, t.N)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for r := 0; r < t.N; r++ {
		ro := RunOptions{WaitDelay: opts.WaitDelay, Env: append(append([]string(nil), opts.Env...),
			"CUDA_VISIBLE_DEVICES="+t.GPUs[r], "ODY_RANK="+strconv.Itoa(r), "ODY_WORLD="+strconv.Itoa(t.N))}
		if r == 0 {
			ro.Stderr, ro.Progress = opts.Stderr, opts.Progress
		}
		a := append(append([]string(nil), args...), t.args(r, uid)...)
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			raw, err := RunWith(ctx, ro, path, a...)
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("tensor-parallel rank %d of %d (GPU %s): %w", r, t.N, t.GPUs[r], err)
				}
				mu.Unlock()
				cancel()
				return
			}
			raws[r] = raw
		}(r)
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return raws, nil
}

// SpeedTP runs `odyssey-rt speed` split over t.N GPUs (one process each) and returns rank 0's
// answer, after checking that every rank answered for the same rows with the same generated
// tokens (the all-reduce leaves every rank the same residual stream; the LM head is replicated).
func SpeedTP(ctx context.Context, opts RunOptions, path string, s SpeedOptions, t TPRun) (*SpeedAnswer, json.RawMessage, error) {
	args := speedArgs(s)
	raws, err := runRanks(ctx, opts, path, t, args)
	if err != nil {
		return nil, nil, err
	}
	answers := make([]*SpeedAnswer, t.N)
	for r, raw := range raws {
		a := new(SpeedAnswer)
		if err := json.Unmarshal(raw, a); err != nil {
			return nil, raw, &RuntimeError{Path: path, Args: args, Message: fmt.Sprintf("rank %d: answer does not match the protocol of docs/executor.md: %v", r, err), Err: err}
		}
		if err := a.check(path, args); err != nil {
			return nil, raw, err
		}
		answers[r] = a
	}
	for r := 1; r < t.N; r++ {
		if len(answers[r].Rows) != len(answers[0].Rows) {
			return nil, raws[0], &RuntimeError{Path: path, Args: args, Message: fmt.Sprintf("rank %d answered %d rows, rank 0 %d", r, len(answers[r].Rows), len(answers[0].Rows))}
		}
		for i, row := range answers[r].Rows {
			want := answers[0].Rows[i]
			if row.Batch != want.Batch || row.TokensHash != want.TokensHash {
				return nil, raws[0], &RuntimeError{Path: path, Args: args, Message: fmt.Sprintf(
					"tensor-parallel ranks disagree: row %d (batch %d): rank %d generated tokens %q, rank 0 %q", i, want.Batch, r, row.TokensHash, want.TokensHash)}
			}
		}
	}
	return answers[0], raws[0], nil
}
