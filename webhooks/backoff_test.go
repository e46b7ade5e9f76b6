package webhooks

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestBackoffSchedule: with the default options the first retry comes within 5 s, each wait
// doubles, none exceeds 5 minutes, and an hour holds at least a dozen attempts; jitter spreads
// each wait over its upper half.
func TestBackoffSchedule(t *testing.T) {
	for _, jitter := range []float64{0, 0.999} {
		d := &Dispatcher{opts: Options{Jitter: func() float64 { return jitter }}.withDefaults()}
		var got []time.Duration
		var total time.Duration
		n := 0
		for total < time.Hour {
			n++
			w := d.backoff(n)
			got = append(got, w)
			total += w
		}
		if got[0] > 5*time.Second {
			t.Errorf("jitter %v: first retry after %v, want within 5s", jitter, got[0])
		}
		for i, w := range got {
			if w > 5*time.Minute {
				t.Errorf("jitter %v: wait %d is %v, want at most 5m", jitter, i+1, w)
			}
			if i > 0 && w < min(2*got[i-1]*99/100, 5*time.Minute/2) {
				t.Errorf("jitter %v: wait %d is %v after %v, want it doubled (or at the cap)", jitter, i+1, w, got[i-1])
			}
		}
		if n < 12 {
			t.Errorf("jitter %v: %d attempts in an hour, want at least 12", jitter, n)
		}
	}
	d := &Dispatcher{opts: Options{Jitter: func() float64 { return 0 }}.withDefaults()}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
	var got []time.Duration
	for n := 1; n <= 4; n++ {
		got = append(got, d.backoff(n))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("first waits without jitter (-want +got):\n%s", diff)
	}
}
