package tokens

import (
	"context"
	"time"
)

// Clock is the one clock of this package: every Store, Academy, Manager and Refresher reads the
// time through the Clock it was given, so tests can fix or move it. A nil Clock is time.Now.
// Waits (lease polls, retries) are real time: they are bounded by contexts, not by this clock.
type Clock func() time.Time

// Now returns the clock's time.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}

// Backoff is the one retry policy of this package: the wait before retry n (n ≥ 1) is Initial
// doubled n-1 times, capped at Max, and Attempts bounds the tries, the first one included.
type Backoff struct {
	// Initial is the wait before the first retry.
	Initial time.Duration
	// Max caps one wait; zero: no cap.
	Max time.Duration
	// Attempts is how many tries there are in all; zero: as many as the context allows.
	Attempts int
}

// Delay returns the wait before retry n (n ≥ 1).
func (b Backoff) Delay(n int) time.Duration {
	d := b.Initial
	for i := 1; i < n && (b.Max == 0 || d < b.Max); i++ {
		d *= 2
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return d
}

// Last reports whether try n (n ≥ 1; the first try is 1) is the last one allowed.
func (b Backoff) Last(n int) bool { return b.Attempts > 0 && n >= b.Attempts }

// Wait blocks for the wait before retry n, or until ctx ends (returning its error).
func (b Backoff) Wait(ctx context.Context, n int) error {
	t := time.NewTimer(b.Delay(n))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
