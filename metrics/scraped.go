package metrics

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Webhook delivery results, the values of the `result` label of
// academy_gateway_webhook_deliveries_total.
const (
	WebhookSuccess = "success" // the receiver answered 2xx
	WebhookRetry   = "retry"   // an attempt failed and will be tried again
	WebhookFailed  = "failed"  // retries were given up; the event is kept for inspection
)

// scrapeTimeout bounds what a scrape-time read of Redis may cost a scrape.
const scrapeTimeout = time.Second

// PendingSource reads how many webhook events are recorded and not yet delivered, for all
// replicas together (one cheap Redis read, such as XLEN).
type PendingSource func(ctx context.Context) (int64, error)

// ConnectionsSource reads the number of connections per status from shared counters (no scan of
// all users), so every replica reports a change by its next scrape.
type ConnectionsSource func(ctx context.Context) (map[string]int64, error)

// pendingGauge is academy_gateway_webhook_pending, read from its source at every scrape. Without
// a source (webhooks off) it is 0; when the source fails the scrape omits it rather than lie.
type pendingGauge struct {
	desc *prometheus.Desc
	src  atomic.Pointer[PendingSource]
}

func (g *pendingGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *pendingGauge) Collect(ch chan<- prometheus.Metric) {
	var n int64
	if src := g.src.Load(); src != nil {
		ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
		defer cancel()
		var err error
		if n, err = (*src)(ctx); err != nil {
			return
		}
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n))
}

// connectionsCollector serves academy_gateway_connections: at every scrape it refreshes the
// gauge from its source (when set and answering), then reports the gauge, so a failed read
// shows the last known counts (kept current by the background round too).
type connectionsCollector struct {
	vec *prometheus.GaugeVec
	src atomic.Pointer[ConnectionsSource]
}

func (c *connectionsCollector) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c *connectionsCollector) Collect(ch chan<- prometheus.Metric) {
	if src := c.src.Load(); src != nil {
		ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
		counts, err := (*src)(ctx)
		cancel()
		if err == nil {
			for status, n := range counts {
				c.vec.WithLabelValues(status).Set(float64(n))
			}
		}
	}
	c.vec.Collect(ch)
}

// SetWebhookPending makes academy_gateway_webhook_pending read src at every scrape.
func (m *Metrics) SetWebhookPending(src PendingSource) { m.webhookPending.src.Store(&src) }

// SetConnectionsSource makes academy_gateway_connections read src at every scrape.
func (m *Metrics) SetConnectionsSource(src ConnectionsSource) { m.connections.src.Store(&src) }
