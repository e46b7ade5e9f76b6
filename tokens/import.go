package tokens

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Bulk registration of existing keys (docs/reference.md §2.1), pipelined: a batch of lines costs a handful
// of round trips, not a few per line. Parsing files is package keyimport's; this is the Redis
// side, used by `keys import` and POST /admin/keys/import alike through keyimport.Run.

// ImportEntry is one line of an import file, already checked: a valid user, a WellFormed key
// and key scopes (nil: whatever the connection grants).
type ImportEntry struct {
	// Line is the entry's line number in the file (its position in a JSON document).
	Line   int
	User   string
	Key    string
	Scopes []string
	Name   string
}

// Import outcomes (docs/reference.md §2.1).
const (
	ImportCreated   = "created"
	ImportUpdated   = "updated"
	ImportUnchanged = "unchanged"
	ImportConflict  = "conflict"
	// ImportRaced: the record changed under the import three times running (another import or
	// revocation of the same key at the same moment); reported as an invalid line to retry.
	ImportRaced = "raced"
)

// ImportResult is what became of one entry. It names the key by id only.
type ImportResult struct {
	Line    int
	ID      string
	Outcome string
}

// importBatch is how many entries one round of pipelines carries.
const importBatch = 1000

// importAttempts bounds how often an entry is re-read after losing a race to another writer.
const importAttempts = 3

// ImportKeys registers entries in file order, as if one at a time: a key new to the gateway is
// created, a key of the same user gets the entry's scopes and name (or is unchanged), and a
// key of another user is a conflict and stays as it is. Entries are independent; running the
// same entries again changes nothing. With dryRun nothing is written and the outcomes are those
// a real run would have. The results are in entry order.
func (s *Store) ImportKeys(ctx context.Context, entries []ImportEntry, dryRun bool) ([]ImportResult, error) {
	out := make([]ImportResult, 0, len(entries))
	// overlay holds what a dry run would have written, so a key repeated in the file gets the
	// outcome it would get in a real run.
	var overlay map[string]*storedRecord
	if dryRun {
		overlay = map[string]*storedRecord{}
	}
	for len(entries) > 0 {
		// A batch never holds one key twice: a repeat waits for the next batch, which sees the
		// first occurrence's write.
		seen := map[string]bool{}
		n := 0
		for n < len(entries) && n < importBatch {
			id := keyID(HashKey(entries[n].Key))
			if seen[id] {
				break
			}
			seen[id] = true
			n++
		}
		res, err := s.importBatch(ctx, entries[:n], overlay)
		if err = s.observe("import_keys", err); err != nil {
			return out, err
		}
		out = append(out, res...)
		entries = entries[n:]
	}
	return out, nil
}

// planned is one entry of a batch on its way through the rounds.
type planned struct {
	e    ImportEntry
	hash string
	id   string
	cur  *storedRecord // the record as read (nil: none)
	next string        // the record to write (JSON)
	gen  string        // the index mark written before the record (creates)
	res  string
}

// importBatch imports entries with distinct keys: read every record in one pipeline, decide,
// write in pipelines, and re-decide the few that lost a race.
func (s *Store) importBatch(ctx context.Context, entries []ImportEntry, overlay map[string]*storedRecord) ([]ImportResult, error) {
	ps := make([]*planned, len(entries))
	for i, e := range entries {
		h := HashKey(e.Key)
		ps[i] = &planned{e: e, hash: h, id: keyID(h)}
	}
	todo := ps
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == importAttempts {
			for _, p := range todo {
				p.res = ImportRaced
			}
			break
		}
		if err := s.readPlanned(ctx, todo, overlay); err != nil {
			return nil, err
		}
		var creates, updates []*planned
		var stale []staleEntry
		for _, p := range todo {
			s.decide(p)
			switch {
			case p.res == ImportCreated:
				creates = append(creates, p)
			case p.res == ImportUpdated:
				updates = append(updates, p)
			case p.res == ImportConflict && p.gen != "":
				// A create that lost to another user's key: its index entry goes.
				stale = append(stale, staleEntry{p.e.User, indexEntry{p.id, p.gen}})
			}
		}
		if err := s.unindex(ctx, stale); err != nil {
			return nil, err
		}
		if overlay != nil {
			for _, p := range append(creates, updates...) {
				r := &storedRecord{raw: p.next}
				_ = json.Unmarshal([]byte(p.next), &r.key)
				if p.cur != nil {
					r.used = p.cur.used
				}
				overlay[p.id] = r
			}
			break
		}
		lost, err := s.writePlanned(ctx, creates, updates)
		if err != nil {
			return nil, err
		}
		todo = lost
	}
	out := make([]ImportResult, len(ps))
	for i, p := range ps {
		out[i] = ImportResult{Line: p.e.Line, ID: p.id, Outcome: p.res}
	}
	return out, nil
}

// readPlanned reads the current record of each entry (the overlay first, in a dry run).
func (s *Store) readPlanned(ctx context.Context, ps []*planned, overlay map[string]*storedRecord) error {
	var ids []string
	var from []*planned
	for _, p := range ps {
		if r, ok := overlay[p.id]; ok {
			p.cur = r
			continue
		}
		ids = append(ids, p.id)
		from = append(from, p)
	}
	recs, err := s.readRecords(ctx, ids)
	if err != nil {
		return err
	}
	for i, p := range from {
		p.cur = recs[i]
	}
	return nil
}

// decide sets the outcome of p against its current record, and the record to write.
func (s *Store) decide(p *planned) {
	if p.cur == nil {
		k := APIKey{ID: p.id, User: p.e.User, Scopes: p.e.Scopes, Name: p.e.Name, CreatedAt: s.now().UTC()}
		b, _ := json.Marshal(storedKey{APIKey: k, Hash: p.hash})
		p.res, p.next = ImportCreated, string(b)
		return
	}
	cur := p.cur.key
	if cur.Hash != p.hash || cur.User != p.e.User {
		p.res = ImportConflict
		return
	}
	if sameScopes(cur.Scopes, p.e.Scopes) && cur.Name == p.e.Name {
		p.res = ImportUnchanged
		return
	}
	next := cur
	next.Scopes, next.Name = p.e.Scopes, p.e.Name
	b, _ := json.Marshal(next)
	p.res, p.next = ImportUpdated, string(b)
}

// sameScopes compares scope lists as sets; nil and empty are the same.
func sameScopes(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// updateScript replaces the record KEYS[1] with ARGV[2] only if it is still ARGV[1].
const updateScript = `if redis.call('HGET', KEYS[1], 'rec') == ARGV[1] then redis.call('HSET', KEYS[1], 'rec', ARGV[2]) return 1 end return 0`

// writePlanned writes creates and updates in pipelines and returns the entries that lost a race
// (the record appeared or changed since it was read), to be decided again. Creates follow the
// index protocol of keyindex.go: index, record, index again, each step a round of its own, as
// a pipeline spanning Cluster nodes keeps no order between them.
func (s *Store) writePlanned(ctx context.Context, creates, updates []*planned) (lost []*planned, err error) {
	if len(creates)+len(updates) == 0 {
		return nil, nil
	}
	marks := s.rdb.Pipeline()
	users := map[string]bool{}
	for _, p := range creates {
		p.gen = newMark()
		marks.HSet(ctx, s.keyIndexKey(p.e.User), p.id, p.gen)
		users[p.e.User] = true
	}
	for _, p := range updates { // records from before the index get their entry here
		marks.HSet(ctx, s.keyIndexKey(p.e.User), p.id, newMark())
		users[p.e.User] = true
	}
	for u := range users {
		marks.ZAdd(ctx, s.directoryKey(), redis.Z{Member: u})
	}
	if _, err := marks.Exec(ctx); err != nil {
		return nil, fmt.Errorf("index imported keys: %w", err)
	}

	writes := s.rdb.Pipeline()
	setnx := make([]*redis.BoolCmd, len(creates))
	for i, p := range creates {
		setnx[i] = writes.HSetNX(ctx, s.apiKeyKey(p.id), "rec", p.next)
	}
	swaps := make([]*redis.Cmd, len(updates))
	for i, p := range updates {
		swaps[i] = writes.Eval(ctx, updateScript, []string{s.apiKeyKey(p.id)}, p.cur.raw, p.next)
	}
	if _, err := writes.Exec(ctx); err != nil {
		return nil, fmt.Errorf("write imported keys: %w", err)
	}

	after := s.rdb.Pipeline()
	for i, p := range creates {
		if setnx[i].Val() {
			after.SAdd(ctx, s.apiKeysKey(), p.id)
			after.HSet(ctx, s.keyIndexKey(p.e.User), p.id, newMark())
			after.Publish(ctx, s.invalidateChannel(), "k:"+p.id) // replicas that cached it as unknown
			continue
		}
		lost = append(lost, p)
	}
	for i, p := range updates {
		if n, _ := swaps[i].Int64(); n == 1 {
			after.Publish(ctx, s.invalidateChannel(), "k:"+p.id) // replicas drop the old scopes
			continue
		}
		lost = append(lost, p)
	}
	if after.Len() > 0 {
		if _, err := after.Exec(ctx); err != nil {
			return nil, fmt.Errorf("index imported keys: %w", err)
		}
	}
	return lost, nil
}
