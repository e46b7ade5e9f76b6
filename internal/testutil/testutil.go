// Package testutil holds the helpers that tests of several packages share. Its one job today is
// waiting for a condition without sleeping a fixed time: Eventually polls a condition until it
// holds or a bound passes, so tests never "sleep and hope".
package testutil

import (
	"errors"
	"testing"
	"time"
)

// PollInterval is the pause between two looks of Eventually.
const PollInterval = 5 * time.Millisecond

// Eventually calls cond until it returns nil, for at most within, pausing PollInterval between
// calls, and fails the test with cond's last error if it never did. cond runs on the caller's
// goroutine, so it may call tb.Fatal itself. Eventually returns how long the wait took, for tests
// that log it (never assert on it: speed is measured by benchmarks only).
func Eventually(tb testing.TB, within time.Duration, cond func() error) time.Duration {
	tb.Helper()
	return EventuallyEvery(tb, within, PollInterval, cond)
}

// EventuallyTrue is Eventually for a condition that only says yes or no: the failure names what
// was awaited.
func EventuallyTrue(tb testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	return EventuallyEvery(tb, within, PollInterval, func() error {
		if cond() {
			return nil
		}
		return errors.New("still waiting for " + what)
	})
}

// EventuallyEvery is Eventually with another pause between two looks, for conditions that are
// costly to check (a query to another process).
func EventuallyEvery(tb testing.TB, within, every time.Duration, cond func() error) time.Duration {
	tb.Helper()
	began := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return time.Since(began)
		}
		if time.Since(began) > within {
			tb.Fatalf("not within %v: %v", within, err)
			return time.Since(began)
		}
		<-tick.C // the poll interval, bounded by within
	}
}
