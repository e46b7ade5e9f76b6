package testutil

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeTB records Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestEventually(t *testing.T) {
	tests := []struct {
		name     string
		trueOn   int // the call on which cond first holds; 0: never
		wantFail string
		wantMin  int // calls at least
	}{
		{name: "holds at once", trueOn: 1, wantMin: 1},
		{name: "holds on the third look", trueOn: 3, wantMin: 3},
		{name: "never holds", trueOn: 0, wantFail: "not within 20ms: look 5", wantMin: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTB{TB: t}
			calls := 0
			Eventually(f, 20*time.Millisecond, func() error {
				calls++
				if calls == tt.trueOn {
					return nil
				}
				return fmt.Errorf("look %d", 5)
			})
			if tt.wantFail == "" && f.failed != "" {
				t.Errorf("Eventually failed: %s", f.failed)
			}
			if tt.wantFail != "" && !strings.HasPrefix(f.failed, tt.wantFail) {
				t.Errorf("failure = %q, want %q", f.failed, tt.wantFail)
			}
			if calls < tt.wantMin || (tt.trueOn > 0 && calls != tt.trueOn) {
				t.Errorf("cond called %d times, want %d", calls, max(tt.trueOn, tt.wantMin))
			}
		})
	}
}
