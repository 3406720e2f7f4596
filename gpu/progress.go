package gpu

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"sync"
)

// maxStderrLine bounds a partial stderr line held while waiting for its newline; a runtime
// that writes more without one is passed through as it is, not buffered without end.
const maxStderrLine = 64 << 10

// progressLines splits the runtime's stderr into lines, hands `progress <done> <total>` lines
// to progress and writes every other line, unchanged, to out.
type progressLines struct {
	mu       sync.Mutex
	out      io.Writer
	progress func(done, total int64)
	partial  []byte
}

func (p *progressLines) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			if len(p.partial) > maxStderrLine {
				p.emit(p.partial)
				p.partial = p.partial[:0]
			}
			break
		}
		line := b[:i+1]
		if len(p.partial) > 0 {
			line = append(p.partial, line...)
			p.partial = p.partial[:0]
		}
		p.emit(line)
		b = b[i+1:]
	}
	// Errors of out (a closed terminal) must not make the runtime's stderr pipe fail, which
	// would kill nothing but lose the tail; they are dropped as io.MultiWriter's caller would.
	return n, nil
}

// Flush passes on a last line that had no newline.
func (p *progressLines) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.partial) > 0 {
		p.emit(p.partial)
		p.partial = p.partial[:0]
	}
}

func (p *progressLines) emit(line []byte) {
	if done, total, ok := ParseProgress(string(line)); ok {
		p.progress(done, total)
		return
	}
	_, _ = p.out.Write(line)
}

// ParseProgress reads a `progress <done> <total>` line of the runtime's stderr
// (docs/executor.md): two integers with 0 ≤ done ≤ total and total > 0. Anything else is not
// a progress line and is reported as ok = false.
func ParseProgress(line string) (done, total int64, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "progress" {
		return 0, 0, false
	}
	d, err1 := strconv.ParseInt(f[1], 10, 64)
	t, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || d < 0 || t <= 0 || d > t {
		return 0, 0, false
	}
	return d, t, true
}
