//go:build go1.27

package h1server_test

import (
	"fmt"
	"net/http"
	"testing"
)

// TestConformanceHeaderValueCount: Go 1.27's net/http answers 431 to a request with more header
// lines than the server's MaxHeaderValueCount (Host included, a repeated name counted per
// line). It is a limit of the fallback, so h1server must keep it too: a head over it must not
// be served on the own loop. (The default, 500, is far above the lines h1server keeps; a
// fallback set lower is what this checks.)
func TestConformanceHeaderValueCount(t *testing.T) {
	maxValues := func(n int) func(*http.Server) {
		return func(s *http.Server) { s.MaxHeaderValueCount = n }
	}
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf("X-Line-%d: %d", i, i))
	}
	runDiff(t, []diffCase{
		{name: "at the limit", cfg: maxValues(5), steps: []step{get("/", lines[:4]...)}},
		{name: "over the limit", cfg: maxValues(5), steps: []step{get("/", lines[:5]...)}},
		{name: "repeated name over the limit", cfg: maxValues(3), steps: []step{get("/", "X-D: 1", "X-D: 2", "X-D: 3")}},
		{name: "pipelined, the second over the limit", cfg: maxValues(3), steps: []step{{request("GET", "/1") + request("GET", "/2", lines[:3]...), []string{"GET", "GET"}}}},
	})
}
