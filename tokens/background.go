package tokens

import (
	"context"
	"maps"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/metrics"
)

// Run does the Manager's periodic work until ctx ends: it writes coalesced last-use times of API
// keys (at most one write per key per interval), keeps the connections gauge current, and, with
// KeepAlive, refreshes idle connections whose refresh token would expire before the next round.
func (mg *Manager) Run(ctx context.Context) {
	t := time.NewTicker(mg.opts.Interval)
	defer t.Stop()
	for {
		mg.tick(ctx)
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			mg.flushUsed(fctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// tick is one background round. It walks the connections a bounded batch at a time (see
// Store.EachConnections), so its memory does not grow with the number of users.
func (mg *Manager) tick(ctx context.Context) {
	mg.flushUsed(ctx)
	counts := make(map[string]int, len(Statuses))
	err := mg.store.EachConnections(ctx, func(conns []Connection) error {
		for _, c := range conns {
			counts[c.Status]++
		}
		mg.reconcile(ctx, conns)
		if mg.opts.KeepAlive {
			mg.keepAlive(ctx, conns)
		}
		return nil
	})
	if err != nil {
		mg.log.Warn("list connections", zap.Error(err))
		return
	}
	for _, status := range Statuses {
		mg.m.Connections.WithLabelValues(status).Set(float64(counts[status]))
	}
	if err := mg.store.reconcileStatusOrphans(ctx); err != nil {
		mg.log.Warn("reconcile connection counts", zap.Error(err))
	}
}

// keepAlive refreshes active connections whose refresh token expires within two rounds. The
// lease makes one replica do it; the others find the newer version and skip.
func (mg *Manager) keepAlive(ctx context.Context, conns []Connection) {
	horizon := mg.opts.Now.Now().Add(2*mg.opts.Interval + mg.opts.RefreshBefore)
	for _, c := range conns {
		if c.Status != StatusActive || c.RefreshExpiresAt.IsZero() || c.RefreshExpiresAt.After(horizon) {
			continue
		}
		if _, err := mg.refresh(ctx, c, metrics.TriggerKeepAlive); err != nil {
			mg.log.Warn("keep-alive refresh", zap.String("user", c.User), zap.Error(err))
		}
	}
}

func (mg *Manager) flushUsed(ctx context.Context) {
	mg.usedMu.Lock()
	used := maps.Clone(mg.used)
	clear(mg.used)
	mg.usedMu.Unlock()
	if len(used) == 0 {
		return
	}
	if err := mg.store.TouchKeys(ctx, used); err != nil {
		mg.log.Warn("record key last use", zap.Error(err))
	}
}
