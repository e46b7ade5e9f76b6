package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
)

func TestFloorPercent(t *testing.T) {
	for _, tc := range []struct {
		live, floor uint64
		want        int
	}{
		{2 << 20, 12 << 20, 500},  // 2 MiB live: collect at 12 MiB
		{4 << 20, 12 << 20, 200},  // 4 MiB: at 12 MiB
		{6 << 20, 12 << 20, 100},  // 6 MiB: GOGC=100 reaches the floor on its own
		{64 << 20, 12 << 20, 100}, // far above: GOGC=100
		{1 << 10, 12 << 20, 1000}, // nearly empty: bounded
		{0, 12 << 20, 1000},       // nothing measured yet
		{11 << 20, 12 << 20, 100}, // just below the floor: never below GOGC=100
	} {
		if got := floorPercent(tc.live, tc.floor, 100); got != tc.want {
			t.Errorf("floorPercent(%d, %d) = %d, want %d", tc.live, tc.floor, got, tc.want)
		}
	}
}

func gogc() int64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestKeepHeapFloor: after a collection GOGC is what the floor asks for, unless the operator
// set GOGC.
func TestKeepHeapFloor(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	stop := make(chan struct{})
	keepHeapFloor(func(string) string { return "50" }, 1<<40, stop) // GOGC set: left alone
	runtime.GC()
	runtime.GC()
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC = %d with GOGC set in the environment, want 100 (untouched)", p)
	}
	keepHeapFloor(func(string) string { return "" }, 1<<40, stop)
	testutil.EventuallyTrue(t, 10*time.Second, "GOGC raised after a collection", func() bool {
		runtime.GC()
		return gogc() == maxGCPercent
	})
	close(stop)
	runtime.GC()
	debug.SetGCPercent(100)
	runtime.GC()
	runtime.GC()
	if p := gogc(); p != 100 {
		t.Errorf("GOGC = %d after stop, want the 100 set since", p)
	}
}
