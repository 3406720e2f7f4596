package parallel

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// withProcs runs f under GOMAXPROCS=p.
func withProcs(t *testing.T, p int, f func()) {
	t.Helper()
	old := runtime.GOMAXPROCS(p)
	defer runtime.GOMAXPROCS(old)
	f()
}

var procs = []int{1, 2, 3, 8}

func TestRangesCoverOnce(t *testing.T) {
	for _, p := range procs {
		for _, n := range []int{0, 1, 2, 5, 7, 64, 1000} {
			for _, minPer := range []int{0, 1, 4, 100} {
				withProcs(t, p, func() {
					hits := make([]atomic.Int32, n)
					var calls atomic.Int32
					Ranges(n, minPer, func(lo, hi int) {
						calls.Add(1)
						if lo > hi || lo < 0 || hi > n {
							t.Errorf("range [%d, %d) outside [0, %d)", lo, hi, n)
						}
						for i := lo; i < hi; i++ {
							hits[i].Add(1)
						}
					})
					for i := range hits {
						if h := hits[i].Load(); h != 1 {
							t.Errorf("p=%d n=%d minPer=%d: item %d run %d times", p, n, minPer, i, h)
						}
					}
					want := max(1, min(p, n/max(1, minPer)))
					if int(calls.Load()) != want {
						t.Errorf("p=%d n=%d minPer=%d: %d ranges, want %d", p, n, minPer, calls.Load(), want)
					}
				})
			}
		}
	}
}

func TestForCoversOnce(t *testing.T) {
	for _, p := range procs {
		for _, n := range []int{0, 1, 2, 3, 100} { // n = 0 and n < workers included
			withProcs(t, p, func() {
				hits := make([]atomic.Int32, n)
				w := Workers(n)
				For(n, func(worker, i int) {
					if worker < 0 || worker >= w {
						t.Errorf("worker %d outside [0, %d)", worker, w)
					}
					hits[i].Add(1)
				})
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						t.Errorf("p=%d n=%d: item %d run %d times", p, n, i, h)
					}
				}
			})
		}
	}
}

func TestForGOMAXPROCS1RunsInOrderOnCaller(t *testing.T) {
	withProcs(t, 1, func() {
		var got []int
		For(5, func(worker, i int) {
			if worker != 0 {
				t.Errorf("worker %d", worker)
			}
			got = append(got, i) // no lock: must run on the caller
		})
		if fmt.Sprint(got) != "[0 1 2 3 4]" {
			t.Errorf("order %v", got)
		}
		var blocks []int
		if err := Blocks(10, 3, 0, func(lo, hi int) error { blocks = append(blocks, lo, hi); return nil }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(blocks) != "[0 3 3 6 6 9 9 10]" {
			t.Errorf("blocks %v", blocks)
		}
	})
}

func TestBlocksCoverOnce(t *testing.T) {
	for _, p := range procs {
		for _, n := range []int{0, 1, 5, 64, 1001} {
			for _, workers := range []int{0, 1, 2, 16} {
				withProcs(t, p, func() {
					hits := make([]atomic.Int32, n)
					err := Blocks(n, 7, workers, func(lo, hi int) error {
						if lo%7 != 0 || hi != min(lo+7, n) {
							t.Errorf("block [%d, %d)", lo, hi)
						}
						for i := lo; i < hi; i++ {
							hits[i].Add(1)
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					for i := range hits {
						if h := hits[i].Load(); h != 1 {
							t.Errorf("n=%d: item %d run %d times", n, i, h)
						}
					}
				})
			}
		}
	}
}

func TestBlocksReturnsLowestError(t *testing.T) {
	for _, p := range procs {
		withProcs(t, p, func() {
			for range 20 {
				err := Blocks(1000, 10, 0, func(lo, hi int) error {
					if lo >= 500 || lo == 300 {
						return fmt.Errorf("block %d", lo)
					}
					return nil
				})
				// The blocks before 300 always run; 300 is the lowest that fails. A later
				// failing block may stop the loop before 300 starts only if it was handed out
				// first, which the in-order counter rules out.
				if err == nil || err.Error() != "block 300" {
					t.Fatalf("p=%d: err %v, want block 300", p, err)
				}
			}
		})
	}
}

func TestBlocksErrorStopsNewBlocks(t *testing.T) {
	withProcs(t, 2, func() {
		var ran atomic.Int32
		sentinel := errors.New("stop")
		err := Blocks(1<<20, 1, 0, func(lo, hi int) error {
			ran.Add(1)
			return sentinel
		})
		if !errors.Is(err, sentinel) {
			t.Fatalf("err %v", err)
		}
		if ran.Load() > 100 {
			t.Errorf("%d blocks ran after the first failure", ran.Load())
		}
	})
}

func boom() { panic("boom") }

// catch runs f and returns what it panicked with.
func catch(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

func TestWorkerPanicReraisedInCaller(t *testing.T) {
	loops := map[string]func(){
		"Ranges": func() {
			Ranges(100, 1, func(lo, hi int) {
				if lo <= 57 && 57 < hi {
					boom()
				}
			})
		},
		"For": func() {
			For(100, func(_, i int) {
				if i == 57 {
					boom()
				}
			})
		},
		"Blocks": func() {
			_ = Blocks(100, 1, 0, func(lo, hi int) error {
				if lo == 57 {
					boom()
				}
				return nil
			})
		},
	}
	for name, loop := range loops {
		for _, p := range []int{2, 4} { // more than one worker: the panic happens off the caller
			withProcs(t, p, func() {
				v := catch(loop)
				pe, ok := v.(*Panic)
				if !ok {
					t.Fatalf("%s p=%d: recovered %T %v, want *Panic", name, p, v, v)
				}
				if pe.Value != "boom" {
					t.Errorf("%s: value %v", name, pe.Value)
				}
				if !strings.Contains(string(pe.Stack), "parallel.boom") {
					t.Errorf("%s: stack lacks the panicking function:\n%s", name, pe.Stack)
				}
				if !strings.Contains(pe.Error(), "boom") {
					t.Errorf("%s: Error() = %q", name, pe.Error())
				}
			})
		}
	}
}

func TestPanicUnwrap(t *testing.T) {
	sentinel := errors.New("inner")
	withProcs(t, 2, func() {
		v := catch(func() {
			For(4, func(_, i int) {
				if i == 1 {
					panic(sentinel)
				}
			})
		})
		if err, ok := v.(error); !ok || !errors.Is(err, sentinel) {
			t.Fatalf("recovered %v, want a *Panic wrapping the sentinel", v)
		}
	})
}

func TestNestedPanicKeepsInnerStack(t *testing.T) {
	withProcs(t, 2, func() {
		v := catch(func() {
			For(2, func(_, i int) {
				For(2, func(_, j int) {
					if i == 1 && j == 1 {
						boom()
					}
				})
			})
		})
		pe, ok := v.(*Panic)
		if !ok || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "parallel.boom") {
			t.Fatalf("recovered %v", v)
		}
	})
}
