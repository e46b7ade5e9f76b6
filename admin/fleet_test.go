package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// send is call with a Content-Type of the caller's choice.
func (e *env) send(t *testing.T, method, path, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", bearer)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// importSummary is the answer of POST /admin/keys/import, decoded strictly.
type importSummary struct {
	Created   int `json:"created"`
	Updated   int `json:"updated"`
	Unchanged int `json:"unchanged"`
	Conflicts []struct {
		Line int    `json:"line"`
		ID   string `json:"id"`
	} `json:"conflicts"`
	Invalid []struct {
		Line   int    `json:"line"`
		Reason string `json:"reason"`
	} `json:"invalid"`
}

func decodeSummary(t *testing.T, rec *httptest.ResponseRecorder) importSummary {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", rec.Code, rec.Body)
	}
	if diff := cmp.Diff([]string{"conflicts", "created", "invalid", "unchanged", "updated"}, fieldNames(object(t, rec))); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	var s importSummary
	dec := json.NewDecoder(strings.NewReader(rec.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("summary %s: %v", rec.Body, err)
	}
	return s
}

// outcomes writes a summary as comparable text.
func (s importSummary) outcomes() string {
	var b strings.Builder
	fmt.Fprintf(&b, "created=%d updated=%d unchanged=%d", s.Created, s.Updated, s.Unchanged)
	for _, c := range s.Conflicts {
		fmt.Fprintf(&b, " conflict@%d:%s", c.Line, c.ID)
	}
	for _, iv := range s.Invalid {
		fmt.Fprintf(&b, " invalid@%d", iv.Line)
	}
	return b.String()
}

// TestImportKeys: every outcome of docs/reference.md §2.1 through POST /admin/keys/import, in each body
// format, with dry runs and a second run that changes nothing; no key in any answer or log.
func TestImportKeys(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const (
		aliceKey = "legacy-import-alice-0001"
		bobKey   = "legacy-import-bob-0002"
	)
	if _, _, err := e.store.IssueKey(ctx, "alice", []string{"read"}, "old", aliceKey); err != nil {
		t.Fatal(err)
	}
	bob, _, err := e.store.IssueKey(ctx, "bob", nil, "", bobKey)
	if err != nil {
		t.Fatal(err)
	}
	type line struct{ user, key, scopes, name string }
	// Lines: created, updated, unchanged, conflict, invalid (malformed key), invalid (scope).
	lines := func(newKey string) []line {
		return []line{
			{"carol", newKey, "read", "new"},
			{"alice", aliceKey, "read write", "old"},
			{"bob", bobKey, "", ""},
			{"carol", bobKey, "", ""},
			{"dan", "agw_notachecksum0000000000000000000000000", "", ""},
			{"dan", "legacy-import-dan-0003", "admin", ""},
		}
	}
	bodies := map[string]func([]line) string{
		"application/x-ndjson": func(ls []line) string {
			var b strings.Builder
			for _, l := range ls {
				fmt.Fprintf(&b, `{"user":%q,"key":%q,"scopes":%s,"name":%q}`+"\n", l.user, l.key, jsonScopes(l.scopes), l.name)
			}
			return b.String()
		},
		"application/json": func(ls []line) string {
			var parts []string
			for _, l := range ls {
				parts = append(parts, fmt.Sprintf(`{"user":%q,"key":%q,"scopes":%s,"name":%q}`, l.user, l.key, jsonScopes(l.scopes), l.name))
			}
			return `{"keys":[` + strings.Join(parts, ",\n") + `]}`
		},
		"text/csv; charset=utf-8": func(ls []line) string {
			b := "user,key,scopes,name\n"
			for _, l := range ls {
				b += strings.Join([]string{l.user, l.key, l.scopes, l.name}, ",") + "\n"
			}
			return b
		},
	}
	firstLine := map[string]int{"application/x-ndjson": 1, "application/json": 1, "text/csv; charset=utf-8": 2}
	n := 0
	for ct, body := range bodies {
		t.Run(ct, func(t *testing.T) {
			n++
			newKey := fmt.Sprintf("legacy-import-carol-%04d", n)
			// alice's key back to its first state, so each format sees an update.
			if _, err := e.store.ImportKeys(ctx, []tokens.ImportEntry{{User: "alice", Key: aliceKey, Scopes: []string{"read"}, Name: "old"}}, false); err != nil {
				t.Fatal(err)
			}
			l0 := firstLine[ct]
			conflict := fmt.Sprintf(" conflict@%d:%s", l0+3, bob.ID)
			invalid := fmt.Sprintf(" invalid@%d invalid@%d", l0+4, l0+5)
			text := body(lines(newKey))

			dry := decodeSummary(t, e.send(t, http.MethodPost, "/admin/keys/import?dry_run=true", ct, text))
			if got, want := dry.outcomes(), "created=1 updated=1 unchanged=1"+conflict+invalid; got != want {
				t.Errorf("dry run = %s, want %s", got, want)
			}
			if _, err := e.store.KeyByHash(ctx, tokens.HashKey(newKey)); err == nil {
				t.Error("a dry run created a key")
			}
			if k, _ := e.store.KeyByHash(ctx, tokens.HashKey(aliceKey)); len(k.Scopes) != 1 {
				t.Errorf("a dry run changed alice's scopes to %v", k.Scopes)
			}

			rec := e.send(t, http.MethodPost, "/admin/keys/import", ct, text)
			real := decodeSummary(t, rec)
			if got, want := real.outcomes(), "created=1 updated=1 unchanged=1"+conflict+invalid; got != want {
				t.Errorf("import = %s, want %s", got, want)
			}
			if k, err := e.store.KeyByHash(ctx, tokens.HashKey(newKey)); err != nil || k.User != "carol" {
				t.Errorf("imported key = %+v, %v", k, err)
			}
			if k, _ := e.store.KeyByHash(ctx, tokens.HashKey(bobKey)); k.User != "bob" {
				t.Errorf("the conflicting key moved to %s", k.User)
			}
			for _, iv := range real.Invalid {
				if iv.Reason == "" {
					t.Errorf("line %d invalid without a reason", iv.Line)
				}
			}

			again := decodeSummary(t, e.send(t, http.MethodPost, "/admin/keys/import", ct, text))
			if got, want := again.outcomes(), "created=0 updated=0 unchanged=3"+conflict+invalid; got != want {
				t.Errorf("second run = %s, want %s", got, want)
			}
			for _, out := range []string{dry.outcomes(), rec.Body.String()} {
				for _, key := range []string{newKey, aliceKey, bobKey, "legacy-import-dan-0003", tokens.HashKey(newKey)} {
					if strings.Contains(out, key) {
						t.Errorf("an answer holds a key or its hash: %s", out)
					}
				}
			}
		})
	}
	for _, entry := range e.logs.All() {
		text := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, key := range []string{aliceKey, bobKey, "legacy-import-carol", "legacy-import-dan"} {
			if strings.Contains(text, key) {
				t.Errorf("log entry holds a key: %s", text)
			}
		}
	}
}

func jsonScopes(s string) string {
	b, _ := json.Marshal(strings.Fields(s))
	return string(b)
}

func TestImportKeysRefused(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, query, contentType, body string
		status                         int
		code, msg                      string
	}{
		{"no content type", "", "", `{"keys":[]}`, 415, "bad_request", "application/x-ndjson"},
		{"form body", "", "application/x-www-form-urlencoded", "user=a", 415, "bad_request", "text/csv"},
		{"wrong CSV header", "", "text/csv", "user,apikey\nalice,legacy-x\n", 400, "bad_request", "line 1"},
		{"document syntax error", "", "application/json", "{\"keys\":[\n{\"user\":\"a\"\n]}", 400, "bad_request", "line 3"},
		{"empty JSON Lines", "", "application/x-ndjson", "", 400, "bad_request", "no lines"},
		{"bad dry_run", "?dry_run=maybe", "application/x-ndjson", `{"user":"a","key":"legacy-k"}`, 400, "bad_request", "dry_run"},
		{"body over 32 MiB", "", "application/x-ndjson", strings.Repeat("x", 32<<20+1), 413, "payload_too_large", "32 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.send(t, http.MethodPost, "/admin/keys/import"+tt.query, tt.contentType, tt.body)
			if body := rec.Body.String(); !strings.Contains(body, tt.msg) {
				t.Errorf("message %s lacks %q", body, tt.msg)
			}
			wantError(t, rec, tt.status, tt.code)
		})
	}
	if keys, _ := e.store.Keys(context.Background(), ""); len(keys) != 0 {
		t.Errorf("refused imports stored %d keys", len(keys))
	}
}

// TestListUsers: GET /admin/users lists every user with a key or a connection, with status,
// key count and last use, in pages.
func TestListUsers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	e.seed(t, now) // alice active, bob reauth_required
	for _, u := range []string{"alice", "carol", "carol", "dave"} {
		if _, _, err := e.store.IssueKey(ctx, u, nil, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	carolKeys, _ := e.store.Keys(ctx, "carol")
	used := now.Truncate(time.Millisecond)
	if err := e.store.TouchKeys(ctx, map[string]time.Time{carolKeys[1].ID: used, carolKeys[0].ID: used.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	type row struct {
		User       string    `json:"user"`
		Status     string    `json:"status"`
		Keys       int       `json:"keys"`
		LastUsedAt time.Time `json:"last_used_at"`
	}
	want := []row{
		{User: "alice", Status: "active", Keys: 1},
		{User: "bob", Status: "reauth_required", Keys: 0},
		{User: "carol", Status: "not_connected", Keys: 2, LastUsedAt: used},
		{User: "dave", Status: "not_connected", Keys: 1},
	}
	for _, limit := range []string{"", "1", "3", "1000"} {
		t.Run("limit "+limit, func(t *testing.T) {
			var got []row
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("more than 10 pages")
				}
				q := "?limit=" + limit + "&cursor=" + cursor
				rec := e.call(t, http.MethodGet, "/admin/users"+q, "")
				if rec.Code != 200 {
					t.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				var page struct {
					Users      []row  `json:"users"`
					NextCursor string `json:"next_cursor"`
				}
				dec := json.NewDecoder(rec.Body)
				dec.DisallowUnknownFields()
				if err := dec.Decode(&page); err != nil {
					t.Fatal(err)
				}
				got = append(got, page.Users...)
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("users (-want +got):\n%s", diff)
			}
		})
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=ten", "?cursor=bogus"} {
		t.Run(q, func(t *testing.T) {
			wantError(t, e.call(t, http.MethodGet, "/admin/users"+q, ""), 400, "bad_request")
		})
	}
}

// TestListPaging: GET /admin/keys and GET /admin/connections page with limit and cursor.
func TestListPaging(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.seed(t, time.Now().UTC())
	var ids []string
	for i := range 5 {
		k, _, err := e.store.IssueKey(ctx, "erin", nil, fmt.Sprint(i), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	for _, tc := range []struct {
		path, field string
		want        int
	}{
		{"/admin/keys?user=erin&limit=2", "keys", 5},
		{"/admin/keys?limit=2", "keys", 5},
		{"/admin/connections?limit=1", "connections", 2},
	} {
		t.Run(tc.path, func(t *testing.T) {
			seen := 0
			var seenIDs []string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("more than 10 pages")
				}
				rec := e.call(t, http.MethodGet, tc.path+"&cursor="+cursor, "")
				if rec.Code != 200 {
					t.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				var page map[string]json.RawMessage
				if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
					t.Fatal(err)
				}
				var items []map[string]any
				if err := json.Unmarshal(page[tc.field], &items); err != nil {
					t.Fatal(err)
				}
				seen += len(items)
				for _, it := range items {
					if id, ok := it["id"].(string); ok {
						seenIDs = append(seenIDs, id)
					}
				}
				cursor = ""
				if raw, ok := page["next_cursor"]; ok {
					_ = json.Unmarshal(raw, &cursor)
				}
				if cursor == "" {
					break
				}
			}
			if seen != tc.want {
				t.Errorf("%d items over all pages, want %d", seen, tc.want)
			}
			if tc.field == "keys" {
				if diff := cmp.Diff(ids, seenIDs); diff != "" {
					t.Errorf("key ids over all pages, oldest first (-want +got):\n%s", diff)
				}
			}
		})
	}
	wantError(t, e.call(t, http.MethodGet, "/admin/keys?cursor=bogus", ""), 400, "bad_request")
	wantError(t, e.call(t, http.MethodGet, "/admin/connections?limit=-1", ""), 400, "bad_request")
}

// TestListsWithoutPagingAreWhole: a list asked for without limit or cursor holds every item,
// however many pages of tokens.MaxPageSize that takes (docs/reference.md §5); with a limit it
// is one page and a cursor.
func TestListsWithoutPagingAreWhole(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n := tokens.MaxPageSize + 1
	for i := range n {
		if _, _, err := e.store.IssueKey(ctx, fmt.Sprintf("u%04d", i), nil, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		path, field string
		want        int
		next        bool
	}{
		{"/admin/keys", "keys", n, false},
		{"/admin/users", "users", n, false},
		{"/admin/keys?limit=10", "keys", 10, true},
		{"/admin/users?limit=1000", "users", 1000, true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			rec := e.call(t, http.MethodGet, tc.path, "")
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var page map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
				t.Fatal(err)
			}
			var items []json.RawMessage
			if err := json.Unmarshal(page[tc.field], &items); err != nil {
				t.Fatal(err)
			}
			_, hasNext := page["next_cursor"]
			if len(items) != tc.want || hasNext != tc.next {
				t.Errorf("%d %s, next_cursor %v; want %d, %v", len(items), tc.field, hasNext, tc.want, tc.next)
			}
		})
	}
}
