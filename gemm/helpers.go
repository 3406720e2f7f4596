package gemm

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Helper goroutines run the members of a team other than the caller. They are kept alive
// between calls, and spin briefly after each job before parking, because starting a team
// member on a fresh goroutine costs ~100 µs on this machine: the runtime has to wake an idle
// OS thread, and in a VM the idle vCPU behind it has to be woken too. That is a fifth of an
// attention-sized product (≈ 0.5 ms), and the forward pass issues them back to back, so a
// helper that is still spinning from the previous call picks the next job up in well under
// a µs. OpenBLAS's threads do the same (for much longer).
//
// helperSpin bounds the spinning. Each spin iteration yields (runtime.Gosched), so a
// spinning helper never delays other goroutines of the program; it does keep one core busy
// for up to helperSpin after each parallel Sgemm.
const helperSpin = 200 * time.Microsecond

type helperJob struct {
	run  func()
	done func() // called after the helper is back in the idle list
}

type helper struct {
	job      atomic.Pointer[helperJob]
	sleeping atomic.Bool
	wake     chan struct{} // capacity 1
}

var helpers struct {
	mu   sync.Mutex
	idle []*helper
}

// goHelper runs run on an idle helper, starting a new helper if none is idle, then calls
// done once that helper is idle again: a caller that waits for done before returning
// finds the same warm helper idle on its next call instead of starting a cold one.
func goHelper(run, done func()) {
	helpers.mu.Lock()
	var h *helper
	if n := len(helpers.idle); n > 0 {
		h = helpers.idle[n-1]
		helpers.idle = helpers.idle[:n-1]
	}
	helpers.mu.Unlock()
	if h == nil {
		h = &helper{wake: make(chan struct{}, 1)}
		go h.loop()
	}
	h.job.Store(&helperJob{run, done})
	// Dekker handshake with loop: it sets sleeping, then re-checks job, before blocking;
	// we set job, then check sleeping. One of the two sees the other's store.
	if h.sleeping.Load() {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

func (h *helper) loop() {
	for {
		f := h.job.Load()
		for spinUntil := time.Now().Add(helperSpin); f == nil; f = h.job.Load() {
			if time.Now().Before(spinUntil) {
				runtime.Gosched()
				continue
			}
			h.sleeping.Store(true)
			if f = h.job.Load(); f == nil {
				<-h.wake
			}
			h.sleeping.Store(false)
			spinUntil = time.Now().Add(helperSpin)
		}
		h.job.Store(nil)
		f.run()
		helpers.mu.Lock()
		helpers.idle = append(helpers.idle, h)
		helpers.mu.Unlock()
		f.done()
	}
}

// latch is a mutex plus the condition waits of team and of the row split in sgemm.
type latch struct {
	mu      sync.Mutex
	cond    sync.Cond
	waiters int
}

func (l *latch) init() { l.cond.L = &l.mu }

// waitFor blocks, with l.mu held, until ready() holds. It spins a little first (yielding
// the processor each time) because the usual wait, for a partner's last chunk, is short,
// and a futex sleep and wake-up costs tens of µs; then it sleeps rather than burning a core
// that, on a shared machine, a descheduled partner may need.
func (l *latch) waitFor(ready func() bool) {
	for i := 0; i < 64 && !ready(); i++ {
		l.mu.Unlock()
		runtime.Gosched()
		l.mu.Lock()
	}
	for !ready() {
		l.waiters++
		l.cond.Wait()
		l.waiters--
	}
}

// wake, with l.mu held, rouses the waiters to re-check their condition.
func (l *latch) wake() {
	if l.waiters > 0 {
		l.cond.Broadcast()
	}
}
