package tokens

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// heldLease renews a lease every third of its TTL and knows until when it is surely held.
type heldLease struct {
	until  atomic.Int64 // unix ns: the lease is ours at least until then
	lost   atomic.Bool  // the store said another holds it now
	now    Clock
	cancel context.CancelFunc
	done   chan struct{}
}

// held reports whether the lease is still ours.
func (h *heldLease) held() bool { return !h.lost.Load() && h.now.Now().UnixNano() < h.until.Load() }

// stop ends the renewals.
func (h *heldLease) stop() { h.cancel(); <-h.done }

// keepLease starts renewing l until the returned heldLease is stopped. A renewal that fails is
// tried again at the next tick while the lease may still be ours; one the store refuses ends it.
func (r *Refresher) keepLease(ctx context.Context, l Lease) *heldLease {
	ctx, cancel := context.WithCancel(ctx)
	h := &heldLease{now: r.opts.Now, cancel: cancel, done: make(chan struct{})}
	h.until.Store(r.opts.Now.Now().Add(r.opts.LeaseTTL).UnixNano())
	go func() {
		defer close(h.done)
		t := time.NewTicker(r.opts.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			renewed := r.opts.Now.Now()
			ok, err := r.store.RenewLease(ctx, l, r.opts.LeaseTTL)
			switch {
			case err == nil && ok:
				h.until.Store(renewed.Add(r.opts.LeaseTTL).UnixNano())
			case err == nil:
				h.lost.Store(true)
				r.log.Warn("refresh lease lost", zap.String("user", l.User))
				return
			default:
				r.log.Warn("renew refresh lease", zap.String("user", l.User), zap.Error(err))
			}
		}
	}()
	return h
}
