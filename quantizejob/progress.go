package quantizejob

import (
	"fmt"
	"time"

	"github.com/odyssey-llm/odyssey/ptq"
)

// Event is one progress report of a job: what `odyssey quantize --json` writes to stderr, one
// JSON object per line, while it runs (the summary still goes to stdout at the end). Field
// names are a stable interface; docs/quantize-events.md describes them with an example.
type Event struct {
	// Event is always "progress".
	Event string `json:"event"`
	// Stage is what the job is doing: "scan" (checking every weight for NaN/Inf), "windows"
	// (sampling the calibration windows), a layer's "collect", "quantize" or "propagate"
	// (ptq.StageCollect, ...), "layer" (a layer is finished and handed to the writer) or
	// "write" (assembling the artifact).
	Stage string `json:"stage"`
	// Layer is the layer (0-based) of a layer's stage and of "layer"; absent otherwise.
	Layer *int `json:"layer,omitempty"`
	// Layers is the model's number of decoder layers.
	Layers int `json:"layers"`
	// Done of Total, counted in Unit: bytes (scan, write), tokens (windows), chunks of
	// calibration windows (collect, propagate), linears (quantize) or layers (layer). Each
	// stage reports 0 when it starts and Total when it ends, with throttled reports between.
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Unit  string `json:"unit"`
	// ElapsedSeconds counts from the start of the job.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// StageETASeconds is the time the current stage still needs at its rate so far; absent
	// until that rate is known (the first report after 0).
	StageETASeconds *float64 `json:"stage_eta_s,omitempty"`
	// ETASeconds is the time the layers still need: what is left of the current layer at the
	// previous layer's stage times, plus the remaining layers at the mean time of the
	// layers this run has computed. Absent until one layer was computed (resumed layers do
	// not count).
	ETASeconds *float64 `json:"eta_s,omitempty"`
	// CollectSeconds, QuantizeSeconds and PropagateSeconds are a finished layer's stage
	// times (stage "layer" only).
	CollectSeconds   float64 `json:"collect_s,omitempty"`
	QuantizeSeconds  float64 `json:"quantize_s,omitempty"`
	PropagateSeconds float64 `json:"propagate_s,omitempty"`
}

// eventThrottle is the least time between two reports of a stage's progress; a stage's
// start and end are always reported.
const eventThrottle = time.Second

// tracker turns the job's progress into Events and estimates of the remaining time.
type tracker struct {
	start  time.Time
	layers int
	emit   func(Event)
	now    func() time.Time

	last       map[string]time.Time // the last report of each stage
	stageStart map[string]time.Time

	cur       int // the layer whose stages are being reported, -1 before any
	curStages map[string]bool
	prev      map[string]time.Duration // stage times of the last computed layer
	computed  int                      // layers computed by this run
	spent     time.Duration            // their total time
}

func newTracker(layers int, emit func(Event)) *tracker {
	return &tracker{start: time.Now(), layers: layers, emit: emit, now: time.Now,
		last: map[string]time.Time{}, stageStart: map[string]time.Time{}, cur: -1}
}

// rate records a stage's progress and returns its remaining time at its rate so far (ok
// false while unknown: at its start).
func (t *tracker) rate(stage string, done, total int64) (eta time.Duration, ok bool) {
	now := t.now()
	if done == 0 {
		t.stageStart[stage] = now
	}
	if done > 0 && done < total {
		if s, seen := t.stageStart[stage]; seen {
			return time.Duration(float64(now.Sub(s)) / float64(done) * float64(total-done)), true
		}
	}
	return 0, false
}

// report emits a stage's progress, throttled between its start and its end, with the stage's
// and the layers' remaining times where known.
func (t *tracker) report(stage string, layer *int, done, total int64, unit string, stageETA, eta *time.Duration, extra func(*Event)) {
	if t.emit == nil {
		return
	}
	now := t.now()
	if stage != "layer" && done != 0 && done != total && now.Sub(t.last[stage]) < eventThrottle {
		return
	}
	t.last[stage] = now
	ev := Event{Event: "progress", Stage: stage, Layer: layer, Layers: t.layers, Done: done, Total: total, Unit: unit,
		ElapsedSeconds: now.Sub(t.start).Seconds()}
	if stageETA != nil {
		s := stageETA.Seconds()
		ev.StageETASeconds = &s
	}
	if eta != nil {
		s := eta.Seconds()
		ev.ETASeconds = &s
	}
	if extra != nil {
		extra(&ev)
	}
	t.emit(ev)
}

// simple reports a stage outside the layers (scan, windows, write).
func (t *tracker) simple(stage string, done, total int64, unit string) {
	sEta, ok := t.rate(stage, done, total)
	var p *time.Duration
	if ok {
		p = &sEta
	}
	t.report(stage, nil, done, total, unit, p, nil, nil)
}

// layerETA returns the time the layers still need, when a computed layer gives the rate.
func (t *tracker) layerETA(ev ptq.ProgressEvent, stageETA time.Duration, stageETAOK bool) (time.Duration, bool) {
	if t.computed == 0 || t.prev == nil {
		return 0, false
	}
	var rest time.Duration
	for _, s := range []string{ptq.StageCollect, ptq.StageQuantize, ptq.StagePropagate} {
		switch {
		case s == ev.Stage && ev.Done == ev.Total:
		case s == ev.Stage && stageETAOK:
			rest += stageETA
		case s == ev.Stage:
			rest += time.Duration(float64(t.prev[s]) * (1 - float64(ev.Done)/float64(max(ev.Total, 1))))
		case !t.curStages[s]:
			rest += t.prev[s]
		}
	}
	mean := t.spent / time.Duration(t.computed)
	return rest + time.Duration(t.layers-ev.Index-1)*mean, true
}

// stage handles a layer's stage event and returns the terminal's description of it.
func (t *tracker) stage(ev ptq.ProgressEvent, unit string) string {
	if ev.Index != t.cur {
		t.cur, t.curStages = ev.Index, map[string]bool{}
	}
	idx := ev.Index
	sEta, sOK := t.rate(ev.Stage, int64(ev.Done), int64(ev.Total))
	eta, ok := t.layerETA(ev, sEta, sOK)
	if ev.Done == ev.Total {
		t.curStages[ev.Stage] = true
	}
	var ps, pe *time.Duration
	if sOK {
		ps = &sEta
	}
	if ok {
		pe = &eta
	}
	t.report(ev.Stage, &idx, int64(ev.Done), int64(ev.Total), unit, ps, pe, nil)
	desc := fmt.Sprintf("layer %d/%d %s %d/%d %s", ev.Index+1, ev.Layers, ev.Stage, ev.Done, ev.Total, unit)
	if sOK {
		desc += ", stage " + shortDuration(sEta)
	}
	if ok {
		desc += ", ETA " + shortDuration(eta)
	}
	return desc
}

// layer handles a finished layer and returns the terminal's description.
func (t *tracker) layer(ev ptq.ProgressEvent) string {
	lr := ev.Layer
	computed := t.cur == lr.Layer && len(t.curStages) > 0
	if computed {
		t.prev = map[string]time.Duration{
			ptq.StageCollect: lr.CollectTime, ptq.StageQuantize: lr.QuantizeTime, ptq.StagePropagate: lr.PropagateTime,
		}
		t.computed++
		t.spent += lr.CollectTime + lr.QuantizeTime + lr.PropagateTime
	}
	var eta time.Duration
	ok := t.computed > 0
	if ok {
		eta = time.Duration(t.layers-lr.Layer-1) * (t.spent / time.Duration(t.computed))
	}
	idx := lr.Layer
	var pe *time.Duration
	if ok {
		pe = &eta
	}
	t.report("layer", &idx, int64(ev.Done), int64(ev.Total), "layers", nil, pe, func(e *Event) {
		e.CollectSeconds, e.QuantizeSeconds, e.PropagateSeconds = lr.CollectTime.Seconds(), lr.QuantizeTime.Seconds(), lr.PropagateTime.Seconds()
	})
	desc := fmt.Sprintf("layer %d/%d done", ev.Done, ev.Total)
	if computed {
		desc += fmt.Sprintf(" (collect %s, quantize %s, propagate %s)", shortDuration(lr.CollectTime), shortDuration(lr.QuantizeTime), shortDuration(lr.PropagateTime))
	}
	if ok && ev.Done < ev.Total {
		desc += ", ETA " + shortDuration(eta)
	}
	return desc
}

// shortDuration writes d as 42s, 3m05s or 2h13m.
func shortDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s/60%60)
}
