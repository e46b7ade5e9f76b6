package tokens

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		b        Backoff
		delays   []time.Duration // Delay(1), Delay(2), …
		lastFrom int             // the first try that is the last one; 0: none
	}{
		{name: "doubling capped", b: Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
			delays: []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}},
		{name: "no cap", b: Backoff{Initial: time.Second, Attempts: 3},
			delays: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}, lastFrom: 3},
		{name: "cap below initial", b: Backoff{Initial: time.Second, Max: time.Millisecond, Attempts: 1},
			delays: []time.Duration{time.Millisecond, time.Millisecond}, lastFrom: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []time.Duration
			for n := 1; n <= len(tt.delays); n++ {
				got = append(got, tt.b.Delay(n))
				if want := tt.lastFrom > 0 && n >= tt.lastFrom; tt.b.Last(n) != want {
					t.Errorf("Last(%d) = %v, want %v", n, tt.b.Last(n), want)
				}
			}
			if diff := cmp.Diff(tt.delays, got); diff != "" {
				t.Errorf("delays (-want +got):\n%s", diff)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Backoff{Initial: time.Hour}).Wait(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait on a cancelled context = %v, want context.Canceled", err)
	}
}

func TestClock(t *testing.T) {
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got := Clock(func() time.Time { return fixed }).Now(); !got.Equal(fixed) {
		t.Errorf("Now() = %v, want %v", got, fixed)
	}
	var c Clock
	if got := c.Now(); time.Since(got) > time.Minute || got.IsZero() {
		t.Errorf("nil Clock Now() = %v, want the current time", got)
	}
}
