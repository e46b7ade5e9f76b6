// Command loadwin is a closed-loop HTTP load generator that reports latency per 1-second
// window, which wrk does not: it shows whether a periodic event (a token refresh every few
// seconds) stalls requests. Every run is bounded by -d; it only talks to the URL it is given.
//
//	go run ./bench/loadwin -url http://127.0.0.1:8080/v1/items -H 'x-api-key: k1-bench-harness' -c 256 -d 30s
//
// Output: one line per window (requests, non-2xx, errors, p50, p99, max and, with -metrics, the
// token refreshes the gateway counted in it), then the median p99 over the windows and the worst
// window's p99 divided by it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

type sample struct {
	window  int
	latency time.Duration
	status  int // 0: transport error
}

func main() {
	url := flag.String("url", "", "URL to GET")
	header := flag.String("H", "", "one request header, 'Name: value'")
	conns := flag.Int("c", 64, "concurrent connections (one request in flight on each)")
	dur := flag.Duration("d", 30*time.Second, "how long to run")
	metricsURL := flag.String("metrics", "", "the gateway's /metrics URL: count token refreshes per window")
	flag.Parse()
	if *url == "" || *conns < 1 || *dur <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	name, value, _ := strings.Cut(*header, ":")
	tr := &http.Transport{MaxConnsPerHost: *conns, MaxIdleConnsPerHost: *conns, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	start := time.Now()
	results := make([][]sample, *conns)
	var wg sync.WaitGroup
	for i := range *conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
				if err != nil {
					fmt.Fprintln(os.Stderr, "loadwin:", err)
					return
				}
				if name != "" {
					req.Header.Set(strings.TrimSpace(name), strings.TrimSpace(value))
				}
				began := time.Now()
				resp, err := client.Do(req)
				status := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				} else if ctx.Err() != nil {
					return // the run ended during this request: not a sample
				}
				results[i] = append(results[i], sample{int(began.Sub(start) / time.Second), time.Since(began), status})
			}
		})
	}
	refreshes := make([]float64, int(*dur/time.Second)+1)
	if *metricsURL != "" {
		wg.Go(func() { countRefreshes(ctx, *metricsURL, start, refreshes) })
	}
	wg.Wait()
	tr.CloseIdleConnections()

	windows := int(*dur / time.Second)
	lat := make([][]time.Duration, windows)
	bad, errs := make([]int, windows), make([]int, windows)
	for _, rs := range results {
		for _, s := range rs {
			if s.window >= windows {
				continue
			}
			lat[s.window] = append(lat[s.window], s.latency)
			switch {
			case s.status == 0:
				errs[s.window]++
			case s.status < 200 || s.status > 299:
				bad[s.window]++
			}
		}
	}
	var p99s []time.Duration
	fmt.Println("window\trequests\tnon2xx\terrors\tp50_ms\tp99_ms\tmax_ms\trefreshes")
	for w := range windows {
		l := lat[w]
		if len(l) == 0 {
			fmt.Printf("%d\t0\t%d\t%d\t-\t-\t-\t%.0f\n", w, bad[w], errs[w], refreshes[w])
			continue
		}
		slices.Sort(l)
		p99 := l[(len(l)*99)/100]
		p99s = append(p99s, p99)
		fmt.Printf("%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.0f\n", w, len(l), bad[w], errs[w], ms(l[len(l)/2]), ms(p99), ms(l[len(l)-1]), refreshes[w])
	}
	if len(p99s) == 0 {
		return
	}
	sorted := slices.Clone(p99s)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	fmt.Printf("median p99 %.2f ms, worst window p99 %.2f ms (%.2fx the median)\n", ms(median), ms(sorted[len(sorted)-1]), float64(sorted[len(sorted)-1])/float64(median))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// countRefreshes scrapes url every 100 ms until ctx ends and adds the growth of
// academy_gateway_token_refreshes_total (all triggers and results) to the window it fell in.
func countRefreshes(ctx context.Context, url string, start time.Time, perWindow []float64) {
	client := &http.Client{Timeout: time.Second}
	last := -1.0
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := client.Get(url)
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		total := 0.0
		for line := range strings.Lines(string(body)) {
			if rest, ok := strings.CutPrefix(line, "academy_gateway_token_refreshes_total{"); ok {
				if _, v, ok := strings.Cut(rest, "} "); ok {
					var f float64
					if _, err := fmt.Sscan(v, &f); err == nil {
						total += f
					}
				}
			}
		}
		if w := int(time.Since(start) / time.Second); last >= 0 && w < len(perWindow) {
			perWindow[w] += total - last
		}
		last = total
	}
}
