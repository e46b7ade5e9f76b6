package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// heapFloor is the heap a small gateway may grow to before the garbage collector runs. With
// GOGC=100 alone a gateway with few connections (a live heap of 2-3 MiB) collected about 100
// times a second under load (32 connections, 27,000 requests a second), for about a tenth of
// its CPU per request; with the floor it collects about 17 times a second. The cost is up to
// the floor in garbage that an idle or lightly loaded gateway keeps (RSS 24 → 34 MB at 32
// connections; a 12 MiB floor saved no more CPU and cost 43 MB). Above 4 MiB of live heap
// (about 150 connections under load) the floor changes nothing: GOGC=100 is in charge, and
// memory grows with the load as before (docs/benchmarks.md).
const heapFloor = 8 << 20

// maxGCPercent bounds the GOGC the floor sets, for a nearly empty heap.
const maxGCPercent = 1000

// floorPercent is the GOGC that makes the next collection start when the heap reaches floor:
// floor/live - 1 in percent, never below base (what GOGC=base alone would do) nor above
// maxGCPercent.
func floorPercent(live, floor uint64, base int) int {
	if live == 0 {
		return maxGCPercent
	}
	p := int(floor*100/live) - 100
	return min(max(p, base), maxGCPercent)
}

// keepHeapFloor adjusts GOGC after every collection so that the heap goal never falls below
// floor (see heapFloor), unless the operator set GOGC. The soft memory limit (GOMEMLIMIT, or the
// container's) still caps the heap. It stops adjusting when stop is closed.
func keepHeapFloor(getenv func(string) string, floor uint64, stop <-chan struct{}) {
	if getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := 100
	var arm func()
	arm = func() {
		// A 32-byte object, so that it is not batched with others by the tiny allocator: its
		// cleanup runs after the first collection that finds it unreachable, that is every one.
		runtime.AddCleanup(new([32]byte), func(struct{}) {
			select {
			case <-stop:
				return
			default:
			}
			metrics.Read(sample)
			if p := floorPercent(sample[0].Value.Uint64(), floor, 100); p != current {
				debug.SetGCPercent(p)
				current = p
			}
			arm()
		}, struct{}{})
	}
	arm()
}
