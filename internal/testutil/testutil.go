// Package testutil holds the helpers that tests of several packages share: waiting for a
// condition without sleeping a fixed time (Eventually polls a condition until it holds or a bound
// passes, so tests never "sleep and hope"), and reading a section of docs/reference.md, which
// the contract tests check the code against.
package testutil

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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

// ReferenceSection returns the body of the section of docs/reference.md titled heading (as
// "4. The proxy listener"), up to the next section, and fails the test when there is none.
func ReferenceSection(tb testing.TB, heading string) string {
	tb.Helper()
	_, here, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "docs", "reference.md"))
	if err != nil {
		tb.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## "+heading+"\n")
	if !ok {
		tb.Fatalf("docs/reference.md has no section %s", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	return section
}
