package tokens_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// BenchmarkImportKeys10k imports 10,000 new keys over 5,000 users into a real redis-server on
// loopback (each iteration under a fresh prefix), then the same lines again (all unchanged).
// docs/benchmarks.md has the figures.
func BenchmarkImportKeys10k(b *testing.B) {
	rs := redistest.Start(b)
	rdb := rs.Client(b)
	kr := mustKeyring(b)
	ctx := context.Background()
	entries := make([]tokens.ImportEntry, 10_000)
	for i := range entries {
		entries[i] = tokens.ImportEntry{Line: i + 2, User: fmt.Sprintf("user%05d", i%5000), Key: fmt.Sprintf("legacy-bench-%06d-0123456789abcdef", i),
			Scopes: []string{"read"}, Name: "bench"}
	}
	for _, rerun := range []bool{false, true} {
		name := "new"
		if rerun {
			name = "unchanged"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				store := tokens.NewStore(rdb, fmt.Sprintf("bench%s%d:", name, i), kr, metrics.New(prometheus.NewRegistry(), "t"), nil)
				if rerun {
					b.StopTimer()
					if _, err := store.ImportKeys(ctx, entries, false); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				res, err := store.ImportKeys(ctx, entries, false)
				if err != nil {
					b.Fatal(err)
				}
				want := tokens.ImportCreated
				if rerun {
					want = tokens.ImportUnchanged
				}
				if res[len(res)-1].Outcome != want {
					b.Fatalf("last outcome %s, want %s", res[len(res)-1].Outcome, want)
				}
			}
			b.ReportMetric(float64(len(entries))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}
