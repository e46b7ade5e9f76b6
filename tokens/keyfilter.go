package tokens

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Invalid-key floods (issue 14 item 8): without a local answer, every request with a key that
// was never registered costs a Redis read, and caching those answers costs memory per random key
// (20 s of random legacy-form keys: ~28k HMGET/s, RSS 25 → 95 MB). A bounded negative cache does
// not help against keys that never repeat. So each Manager keeps the set of registered key ids
// (the first 64 bits of the key's SHA-256: 800 kB for 100,000 keys), built in the background by
// SSCAN once the invalidation subscription is live and kept current by its messages. A key whose
// id is not in the set is looked up in Redis only within a budget of reads per second
// (ManagerOptions.UnknownKeyReads): a key created on another replica a moment ago, whose message
// has not arrived yet, works at once (and joins the set), and an unknown key during a Redis
// outage gets 503 as before; a flood exhausts the budget and the rest is refused without Redis.
// Until the first build completes (start-up, ~100 ms per 100,000 keys), lookups go to Redis with
// the bounded negative cache.
//
// Limiting failed lookups per caller was the alternative: it needs a trusted-proxy list to know
// who the caller is behind an ingress, still costs Redis reads up to the limit, and refuses
// legitimate callers that share an address with an attacker. The set costs a few bytes per key
// and no per-caller state.
//
// The set only grows between builds (a revoked key stays in it until the next build and is then
// answered by Redis and the negative cache), and it is rebuilt on every (re)subscription, since
// messages published while the subscription was down are lost, and every rebuild interval, which
// bounds how long a key whose announcement was lost (a failed PUBLISH) is refused.

// keyFilter is the set of registered key ids: a sorted slice from the last build (8 bytes per
// key) and a map of the ids announced since.
type keyFilter struct {
	mu      sync.RWMutex
	built   bool
	ids     []uint64            // sorted, from the last build
	added   map[uint64]struct{} // announced since the last build
	pending map[uint64]struct{} // announced during a build, added to its result; nil when none runs
}

// idBits parses a key id (16 hex digits).
func idBits(id string) (uint64, bool) {
	if len(id) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(id, 16, 64)
	return n, err == nil
}

// hasBits reports whether the id whose 64 bits are n (the first 8 bytes of the key's SHA-256,
// big-endian: what idBits parses) may be registered; ready is false until the set was built.
func (f *keyFilter) hasBits(n uint64) (known, ready bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.built {
		return true, false
	}
	if _, found := slices.BinarySearch(f.ids, n); found {
		return true, true
	}
	_, known = f.added[n]
	return known, true
}

// add records an announced id (a key created, or revoked: either way Redis has the answer).
func (f *keyFilter) add(id string) {
	n, ok := idBits(id)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.added == nil {
		f.added = make(map[uint64]struct{})
	}
	f.added[n] = struct{}{}
	if f.pending != nil {
		f.pending[n] = struct{}{}
	}
}

// size returns the number of ids held and whether the set was built.
func (f *keyFilter) size() (int, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.ids) + len(f.added), f.built
}

// build replaces the set with the ids scan yields, plus those announced meanwhile. On error the
// current set is kept. Builds must not run concurrently.
// hint is the expected number of ids.
func (f *keyFilter) build(ctx context.Context, hint int, scan func(ctx context.Context, yield func(id string)) error) error {
	f.mu.Lock()
	f.pending = make(map[uint64]struct{})
	next := make([]uint64, 0, max(hint, len(f.ids)+len(f.added)))
	f.mu.Unlock()
	err := scan(ctx, func(id string) {
		if n, ok := idBits(id); ok {
			next = append(next, n)
		}
	})
	slices.Sort(next)
	next = slices.Clip(slices.Compact(next))
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.ids, f.added, f.built = next, f.pending, true
	}
	f.pending = nil
	return err
}

// keyFilterRetry is the wait before retrying a failed build.
const keyFilterRetry = time.Second

// keepKeyFilter builds the key filter whenever rebuild signals and every opts.Interval, until
// ctx ends.
func (mg *Manager) keepKeyFilter(ctx context.Context, rebuild <-chan struct{}) {
	t := time.NewTicker(mg.opts.Interval)
	defer t.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-rebuild:
		case <-t.C:
		case <-retry:
		}
		retry = nil
		began := time.Now()
		n, err := mg.store.KeyCount(ctx)
		if err == nil {
			err = mg.filter.build(ctx, int(min(n, 10_000_000))+64, mg.store.KeyIDs)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			mg.log.Warn("load key ids; unknown keys are looked up in Redis meanwhile", zap.Error(err))
			retry = time.After(keyFilterRetry)
			continue
		}
		ids, _ := mg.filter.size()
		mg.log.Debug("key filter built", zap.Int("keys", ids), zap.Duration("took", time.Since(began)))
	}
}

// KeyFilter reports how many key ids the local key filter holds and whether it is built (until
// it is, unknown keys are looked up in Redis). For readiness reports and tests.
func (mg *Manager) KeyFilter() (ids int, built bool) { return mg.filter.size() }

// perSecond admits at most max events per wall-clock second.
type perSecond struct {
	max int
	mu  sync.Mutex
	sec int64
	n   int
}

func (p *perSecond) allow(now time.Time) bool {
	sec := now.Unix()
	p.mu.Lock()
	defer p.mu.Unlock()
	if sec != p.sec {
		p.sec, p.n = sec, 0
	}
	if p.n >= p.max {
		return false
	}
	p.n++
	return true
}
