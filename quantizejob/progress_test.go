package quantizejob

import (
	"testing"
	"time"

	"github.com/odyssey-llm/odyssey/ptq"
)

// TestTrackerETA drives the tracker with a fake clock through one layer of 10 s collect, 2 s
// quantize and 8 s propagate, then half of the next layer's collect at half the speed: the
// stage's remaining time follows its own rate (10 s), and the layers' adds the previous
// layer's quantize and propagate and two more layers of 20 s.
func TestTrackerETA(t *testing.T) {
	var events []Event
	tr := newTracker(4, func(e Event) { events = append(events, e) })
	now := time.Unix(0, 0)
	tr.now = func() time.Time { return now }
	step := func(stage string, layer, done, total int, after time.Duration) string {
		now = now.Add(after)
		return tr.stage(ptq.ProgressEvent{Stage: stage, Done: done, Total: total, Index: layer, Layers: 4}, "chunks")
	}
	step(ptq.StageCollect, 0, 0, 10, 0)
	step(ptq.StageCollect, 0, 10, 10, 10*time.Second)
	step(ptq.StageQuantize, 0, 0, 7, 0)
	step(ptq.StageQuantize, 0, 7, 7, 2*time.Second)
	step(ptq.StagePropagate, 0, 0, 10, 0)
	step(ptq.StagePropagate, 0, 10, 10, 8*time.Second)
	tr.layer(ptq.ProgressEvent{Stage: "layer", Done: 1, Total: 4, Layer: &ptq.LayerResult{Layer: 0,
		CollectTime: 10 * time.Second, QuantizeTime: 2 * time.Second, PropagateTime: 8 * time.Second}})
	if e := events[len(events)-1]; e.Stage != "layer" || e.ETASeconds == nil || *e.ETASeconds != 60 {
		t.Fatalf("after layer 0: %+v, want eta_s 60", e)
	}
	step(ptq.StageCollect, 1, 0, 10, 0)
	desc := step(ptq.StageCollect, 1, 5, 10, 10*time.Second)
	e := events[len(events)-1]
	if e.StageETASeconds == nil || *e.StageETASeconds != 10 || e.ETASeconds == nil || *e.ETASeconds != 10+2+8+40 {
		t.Fatalf("layer 1 half collected: %+v, want stage_eta_s 10 and eta_s 60", e)
	}
	if want := "layer 2/4 collect 5/10 chunks, stage 10s, ETA 1m00s"; desc != want {
		t.Errorf("description %q, want %q", desc, want)
	}
	// Within the throttle interval a report in the middle of a stage is not emitted.
	n := len(events)
	step(ptq.StageCollect, 1, 6, 10, 100*time.Millisecond)
	if len(events) != n {
		t.Errorf("a report 0.1 s after the last was emitted: %+v", events[n:])
	}
	step(ptq.StageCollect, 1, 10, 10, 100*time.Millisecond)
	if len(events) != n+1 {
		t.Error("the end of a stage was not emitted")
	}
}
