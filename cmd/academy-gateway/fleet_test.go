package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/tokens"
)

// cliRun runs a command with the fixture's configuration and returns its exit status and both
// outputs (stderr also carries the logs of the command).
func (f *cliFixture) cliRun(args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	var out, errOut bytes.Buffer
	err := run(f.t.Context(), append(args, "--config", f.config), f.getenv, &out, &errOut)
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

// writeFile writes a file into the test's temporary directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cliSummary is `keys import --json`, decoded strictly.
type cliSummary struct {
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

func (s cliSummary) String() string {
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

func decodeCLISummary(t *testing.T, out string) cliSummary {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var s cliSummary
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("keys import --json printed %q: %v", out, err)
	}
	return s
}

// TestCLIImport: `keys import` over CSV and JSON Lines files: every outcome, dry run, a second
// run that changes nothing, exit 1 on conflicts and invalid lines, a malformed file, and no key
// on stdout or stderr (which carries the command's logs too).
func TestCLIImport(t *testing.T) {
	t.Parallel()
	f := newCLIFixture(t)
	ctx := t.Context()
	const aliceKey, bobKey = "legacy-cli-alice-0001", "legacy-cli-bob-0002"
	if _, _, err := f.store.IssueKey(ctx, "alice", []string{"read"}, "old", aliceKey); err != nil {
		t.Fatal(err)
	}
	bob, _, err := f.store.IssueKey(ctx, "bob", nil, "", bobKey)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{aliceKey, bobKey, "legacy-cli-carol", "legacy-cli-dan", tokens.HashKey(aliceKey)}
	noSecrets := func(what, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s holds a key: %s", what, out)
			}
		}
	}
	files := map[string]struct {
		text  string
		first int // the line of the first record
	}{
		"keys.csv": {"user,key,scopes,name\n" +
			"carol,legacy-cli-carol-0003,read,new\n" +
			"alice," + aliceKey + ",read write,old\n" +
			"bob," + bobKey + ",,\n" +
			"carol," + bobKey + ",,\n" +
			"dan,legacy-cli-dan 0004,,\n" + // a space: malformed
			"dan,legacy-cli-dan-0005,admin,\n", 2},
		"keys.jsonl": {`{"user":"carol","key":"legacy-cli-carol-0006","scopes":["read"],"name":"new"}` + "\n" +
			`{"user":"alice","key":"` + aliceKey + `","scopes":["read","write"],"name":"old"}` + "\n" +
			`{"user":"bob","key":"` + bobKey + `"}` + "\n" +
			`{"user":"carol","key":"` + bobKey + `"}` + "\n" +
			`{"user":"dan","key":"legacy-cli-dan-0007",` + "\n" +
			`{"user":"dan","key":"legacy-cli-dan-0008","scopes":["admin"]}` + "\n", 1},
	}
	for name, file := range files {
		t.Run(name, func(t *testing.T) {
			if _, err := f.store.ImportKeys(ctx, []tokens.ImportEntry{{User: "alice", Key: aliceKey, Scopes: []string{"read"}, Name: "old"}}, false); err != nil {
				t.Fatal(err)
			}
			path := writeFile(t, name, file.text)
			tail := fmt.Sprintf(" conflict@%d:%s invalid@%d invalid@%d", file.first+3, bob.ID, file.first+4, file.first+5)

			code, out, errOut := f.cliRun("keys", "import", "--dry-run", "--json", path)
			noSecrets("stdout", out)
			noSecrets("stderr", errOut)
			if code != 1 {
				t.Errorf("dry run exit %d, want 1 (conflicts and invalid lines); stderr %s", code, errOut)
			}
			if got, want := decodeCLISummary(t, out).String(), "created=1 updated=1 unchanged=1"+tail; got != want {
				t.Errorf("dry run = %s, want %s", got, want)
			}
			if k, _ := f.store.KeyByHash(ctx, tokens.HashKey(aliceKey)); len(k.Scopes) != 1 {
				t.Errorf("a dry run changed alice's scopes to %v", k.Scopes)
			}

			code, out, errOut = f.cliRun("keys", "import", path)
			noSecrets("stdout", out)
			noSecrets("stderr", errOut)
			if code != 1 || !strings.Contains(errOut, "some lines were not imported") {
				t.Errorf("import exit %d, stderr %q; want 1 and the reason", code, errOut)
			}
			wantText := []string{"1 created, 1 updated, 1 unchanged, 1 conflicts, 2 invalid",
				fmt.Sprintf("line %d: conflict: the key is registered to another user as key id %s", file.first+3, bob.ID),
				fmt.Sprintf("line %d: invalid: key is malformed", file.first+4),
				fmt.Sprintf("line %d: invalid: scopes may hold only read, write and delete", file.first+5)}
			if name == "keys.jsonl" {
				wantText[2] = fmt.Sprintf("line %d: invalid: the line is not a JSON object", file.first+4)
			}
			for _, w := range wantText {
				if !strings.Contains(out, w) {
					t.Errorf("summary lacks %q:\n%s", w, out)
				}
			}
			if k, _ := f.store.KeyByHash(ctx, tokens.HashKey(aliceKey)); len(k.Scopes) != 2 {
				t.Errorf("alice's scopes after the import = %v, want read and write", k.Scopes)
			}

			code, out, _ = f.cliRun("keys", "import", "--json", path)
			if got, want := decodeCLISummary(t, out).String(), "created=0 updated=0 unchanged=3"+tail; code != 1 || got != want {
				t.Errorf("second run = exit %d %s, want 1 %s", code, got, want)
			}
		})
	}

	t.Run("clean file exits 0", func(t *testing.T) {
		path := writeFile(t, "ok.csv", "user,key,scopes,name\nerin,legacy-cli-erin-0009,,\n")
		for range 2 {
			if code, out, errOut := f.cliRun("keys", "import", path); code != 0 {
				t.Errorf("exit %d: %s %s", code, out, errOut)
			}
		}
	})
	t.Run("malformed file", func(t *testing.T) {
		path := writeFile(t, "bad.csv", "user,apikey,scopes,name\nfrank,legacy-cli-frank-0010,,\n")
		code, out, errOut := f.cliRun("keys", "import", path)
		if code != 1 || !strings.Contains(errOut, "line 1") || !strings.Contains(errOut, "user,key,scopes,name") {
			t.Errorf("exit %d, stderr %q; want 1 and the header named", code, errOut)
		}
		noSecrets("stdout", out)
		if strings.Contains(errOut, "legacy-cli-frank") {
			t.Errorf("stderr holds the key: %s", errOut)
		}
		if _, err := f.store.KeyByHash(ctx, tokens.HashKey("legacy-cli-frank-0010")); err == nil {
			t.Error("a file that cannot be parsed imported a key")
		}
	})
	t.Run("usage", func(t *testing.T) {
		f.fail(2, "keys import: missing FILE", "keys", "import")
		f.fail(1, "no such file", "keys", "import", filepath.Join(t.TempDir(), "missing.csv"))
	})
}

// TestCLIImportStdinBinary feeds `keys import -` through the real binary's standard input.
func TestCLIImportStdinBinary(t *testing.T) {
	t.Parallel()
	f := newCLIFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := buildBinary(t, ctx)
	cmd := exec.CommandContext(ctx, bin, "keys", "import", "--json", "--config", f.config, "-")
	cmd.Stdin = strings.NewReader(`{"user":"gina","key":"legacy-stdin-0001"}` + "\n" + `{"user":"gina","key":"legacy-stdin-0002","scopes":["read"]}` + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("keys import -: %v\n%s", err, stderr.String())
	}
	if got := decodeCLISummary(t, stdout.String()).String(); got != "created=2 updated=0 unchanged=0" {
		t.Errorf("summary = %s", got)
	}
	if strings.Contains(stdout.String()+stderr.String(), "legacy-stdin") {
		t.Errorf("output holds a key: %s %s", stdout.String(), stderr.String())
	}
	if keys, err := f.store.Keys(ctx, "gina"); err != nil || len(keys) != 2 {
		t.Errorf("gina's keys = %d, %v; want 2", len(keys), err)
	}
}

// TestCLIFleet: connections pending, connections authorize for several users, keys revoke
// --user, and keys list streaming more than one page.
func TestCLIFleet(t *testing.T) {
	t.Parallel()
	f := newCLIFixture(t)
	ctx := t.Context()
	now := time.Now().UTC()
	for _, c := range []tokens.Connection{
		{User: "active1", Status: tokens.StatusActive, AccessToken: "at", RefreshToken: "rt", IssuedAt: now, AccessExpiresAt: now.Add(time.Hour)},
		{User: "stale1", Status: tokens.StatusReauthRequired, AccessToken: "at", RefreshToken: "rt", IssuedAt: now, AccessExpiresAt: now},
		// reauth_required without keys: nobody to send a link to, so not pending.
		{User: "keyless1", Status: tokens.StatusReauthRequired, AccessToken: "at", RefreshToken: "rt", IssuedAt: now, AccessExpiresAt: now},
	} {
		if _, err := f.store.PutConnection(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	var entries []tokens.ImportEntry
	for i := range 1500 { // more than one page of keys
		entries = append(entries, tokens.ImportEntry{Line: i + 1, User: []string{"active1", "stale1", "new1"}[i%3], Key: fmt.Sprintf("legacy-fleet-%05d", i)})
	}
	if _, err := f.store.ImportKeys(ctx, entries, false); err != nil {
		t.Fatal(err)
	}

	t.Run("pending", func(t *testing.T) {
		out := f.ok("connections", "pending", "--json")
		var got struct {
			Users []struct {
				User   string `json:"user"`
				Status string `json:"status"`
				Keys   int    `json:"keys"`
			} `json:"users"`
		}
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("connections pending --json: %v: %s", err, out)
		}
		var rows []string
		for _, u := range got.Users {
			rows = append(rows, fmt.Sprintf("%s %s %d", u.User, u.Status, u.Keys))
		}
		if diff := cmp.Diff([]string{"new1 not_connected 500", "stale1 reauth_required 500"}, rows); diff != "" {
			t.Errorf("pending (-want +got):\n%s", diff)
		}
		text := f.ok("connections", "pending")
		if !strings.Contains(text, "new1") || !strings.Contains(text, "not_connected") || strings.Contains(text, "active1") {
			t.Errorf("connections pending printed:\n%s", text)
		}
	})

	t.Run("authorize several", func(t *testing.T) {
		out := f.ok("connections", "authorize", "--json", "new1", "stale1", "x@y")
		sc := bufio.NewScanner(strings.NewReader(out))
		var users []string
		links := map[string]bool{}
		for sc.Scan() {
			var l struct {
				User         string    `json:"user"`
				AuthorizeURL string    `json:"authorize_url"`
				ExpiresAt    time.Time `json:"expires_at"`
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if !strings.Contains(l.AuthorizeURL, "ticket=") || l.ExpiresAt.Before(time.Now()) {
				t.Errorf("link for %s = %+v", l.User, l)
			}
			users = append(users, l.User)
			links[l.AuthorizeURL] = true
		}
		if diff := cmp.Diff([]string{"new1", "stale1", "x@y"}, users); diff != "" || len(links) != 3 {
			t.Errorf("links for (-want +got):\n%s (%d distinct links)", diff, len(links))
		}
		f.fail(2, "is not a user id", "connections", "authorize", "ok", "not{ok}")
		f.fail(2, "connections authorize: missing USER", "connections", "authorize")
	})

	t.Run("list streams", func(t *testing.T) {
		out := f.ok("keys", "list", "--json")
		var got struct {
			Keys []map[string]any `json:"keys"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("keys list --json: %v", err)
		}
		if len(got.Keys) != 1500 {
			t.Errorf("keys list --json listed %d keys, want 1500", len(got.Keys))
		}
		text := f.ok("keys", "list", "--user", "new1")
		if n := strings.Count(text, "\n"); n != 501 {
			t.Errorf("keys list --user new1 printed %d lines, want a header and 500 keys", n)
		}
		if out := f.ok("keys", "list", "--user", "nobody", "--json"); !json.Valid([]byte(out)) || !strings.Contains(out, `"keys": []`) {
			t.Errorf("empty list = %q", out)
		}
	})

	t.Run("revoke all of a user's keys", func(t *testing.T) {
		out := f.ok("keys", "revoke", "--user", "new1")
		if !strings.Contains(out, "revoked 500 keys of new1") {
			t.Errorf("keys revoke --user printed %q", out[max(0, len(out)-200):])
		}
		keys, err := f.store.Keys(ctx, "new1")
		if err != nil || len(keys) != 0 {
			t.Errorf("new1 keeps %d keys (%v)", len(keys), err)
		}
		if k, err := f.store.KeyByHash(ctx, tokens.HashKey("legacy-fleet-00000")); err != nil || k.User != "active1" {
			t.Errorf("active1's key after revoking new1's: %+v, %v", k, err)
		}
		out = f.ok("connections", "pending", "--json")
		if strings.Contains(out, "new1") {
			t.Errorf("new1 is still pending with no keys and no connection: %s", out)
		}
		f.fail(2, "give one key id or --user USER, not both", "keys", "revoke", "--user", "new1", "0123456789abcdef")
	})

	t.Run("reindex", func(t *testing.T) {
		out := f.ok("keys", "reindex")
		if !strings.Contains(out, "indexed 1000 keys") {
			t.Errorf("keys reindex printed %q", out)
		}
	})
}
