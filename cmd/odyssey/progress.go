package main

import (
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress draws a bar on stderr when stderr is a terminal and stays silent otherwise, so logs
// and CI output are not flooded with carriage returns and --json output stays clean.
type progress struct {
	bar *progressbar.ProgressBar
}

// isTerminal reports whether w is an interactive terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newProgress returns a bar of total steps named desc, or a silent one when quiet or when
// w is not a terminal.
func newProgress(w io.Writer, quiet bool, total int64, desc, unit string) *progress {
	if quiet || !isTerminal(w) {
		return &progress{}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
	}
	if unit == "B" { // byte counts and rates read better as MB, GB
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionSetItsString(unit), progressbar.OptionShowIts())
	}
	bar := progressbar.NewOptions64(total, opts...)
	return &progress{bar: bar}
}

// Set moves the bar to n and updates the description (e.g. with a throughput figure).
func (p *progress) Set(n int64, desc string) {
	if p.bar == nil {
		return
	}
	_ = p.bar.Set64(n)
	if desc != "" {
		p.bar.Describe(desc)
	}
}

// SetTotal changes the number of steps, for work whose size is known only once started.
func (p *progress) SetTotal(total int64) {
	if p.bar != nil && p.bar.GetMax64() != total {
		p.bar.ChangeMax64(total)
	}
}

// Done clears the bar.
func (p *progress) Done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
