package tokens

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Cache invalidation across replicas: every write that must take effect everywhere at once
// (a revoked key, a revoked or replaced connection) publishes a message on one Redis channel;
// every Manager subscribes and drops the named entry. A missed message costs at most CacheTTL
// (and, for a created key, until the key filter's next rebuild: see keyfilter.go).

func (s *Store) invalidateChannel() string { return s.prefix + "invalidate" }

// publish announces that the cached state of user ("u:USER") or key ("k:ID") changed. A failure
// is only logged by callers' metrics: the cache TTL bounds the staleness anyway.
func (s *Store) publish(ctx context.Context, msg string) {
	_ = s.observe("publish", s.rdb.Publish(ctx, s.invalidateChannel(), msg).Err())
}

// watch delivers invalidation messages to fn until ctx ends, resubscribing after a failure.
// ready (may be nil) is called each time the subscription is confirmed.
func (s *Store) watch(ctx context.Context, log *zap.Logger, ready func(), fn func(user, keyID string)) {
	retry := Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second}
	for try := 1; ctx.Err() == nil; try++ {
		sub := s.rdb.Subscribe(ctx, s.invalidateChannel())
		if _, err := sub.Receive(ctx); err != nil {
			sub.Close()
			log.Warn("subscribe to invalidations; retrying", zap.Error(err))
			_ = retry.Wait(ctx, try) // ends early with ctx, which the loop checks
			continue
		}
		try = 0
		if ready != nil {
			ready()
		}
		ch := sub.ChannelWithSubscriptions()
		for open := true; open; {
			select {
			case <-ctx.Done():
				open = false
			case m, ok := <-ch:
				if !ok {
					open = false
					break
				}
				switch m := m.(type) {
				case *redis.Subscription:
					// go-redis resubscribes on its own after a dropped connection, and what was
					// published meanwhile is lost: tell ready it is a new start.
					if m.Kind == "subscribe" && ready != nil {
						ready()
					}
				case *redis.Message:
					kind, id, _ := strings.Cut(m.Payload, ":")
					switch kind {
					case "u":
						fn(id, "")
					case "k":
						fn("", id)
					}
				}
			}
		}
		sub.Close()
	}
}

// Watch keeps the Manager's cache in step with revocations and re-authorizations made by any
// replica or CLI, and its key filter with created keys, until ctx ends. ready (may be nil) is
// called each time the subscription is (re)established; the key filter is (re)built then.
func (mg *Manager) Watch(ctx context.Context, ready func()) {
	rebuild := make(chan struct{}, 1)
	var filter sync.WaitGroup
	filter.Go(func() { mg.keepKeyFilter(ctx, rebuild) })
	defer filter.Wait()
	signal := func() {
		select {
		case rebuild <- struct{}{}:
		default: // one is pending already
		}
	}
	mg.store.watch(ctx, mg.log, func() {
		signal()
		if ready != nil {
			ready()
		}
	}, func(user, keyID string) {
		if keyID == allKeys {
			signal()
			return
		}
		mg.Forget(user, keyID)
		if keyID != "" {
			mg.filter.add(keyID)
		}
	})
}

// allKeys, as the id of a "k:" message, asks every replica to rebuild its key filter: for writes
// that register many keys at once without a message per key.
const allKeys = "*"
