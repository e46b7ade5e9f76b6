package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/admin"
	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/keyimport"
	"github.com/academy-gateway/academy-gateway/tokens"
	"github.com/academy-gateway/academy-gateway/webhooks"
)

// The commands that move a fleet of v1 callers (issue 10): keys import, keys reindex, keys
// revoke --user, connections pending, connections authorize for many users, and the streamed
// lists. Every list walks the store a page at a time, so its memory does not grow with the
// number of users.

// errImportIncomplete is the exit-1 error of an import with conflicts or invalid lines.
var errImportIncomplete = errors.New("keys import: some lines were not imported (conflicts or invalid lines; see above)")

// keysImport is `keys import [--dry-run] [--json] FILE` (docs/reference.md §2.1).
func (e env) keysImport(ctx context.Context, args []string) error {
	fs, path := e.newFlags("keys import")
	asJSON := fs.Bool("json", false, "print the summary as JSON (the admin API's answer)")
	dryRun := fs.Bool("dry-run", false, "report the outcomes and write nothing")
	pos, err := parse(fs, args) // one FILE (the commands table)
	if err != nil {
		return err
	}
	in := io.Reader(os.Stdin)
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("keys import: %w", err)
		}
		defer f.Close()
		in = f
	}
	a, err := e.openForCLI(*path)
	if err != nil {
		return err
	}
	defer a.Close()
	br := bufio.NewReaderSize(in, 64<<10)
	head, _ := br.Peek(512)
	sum, err := keyimport.Run(ctx, a.store, br, keyimport.Detect(head), *dryRun)
	if err != nil {
		return fmt.Errorf("keys import: %w", err)
	}
	if !*dryRun {
		a.audit.Record(audit.KeyImported, audit.FromCLI, sum.AuditFields()...)
	}
	if *asJSON {
		err = writeJSON(e.stdout, sum)
	} else {
		err = sum.WriteText(e.stdout, *dryRun)
	}
	if err != nil {
		return err
	}
	if sum.Failed() {
		return errImportIncomplete
	}
	return nil
}

// keysReindex is `keys reindex`: indexes records written before the per-user index (or by a
// replica of an older version during a rolling upgrade). Safe while replicas serve.
func (e env) keysReindex(ctx context.Context, args []string) error {
	fs, path := e.newFlags("keys reindex")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	a, err := e.openForCLI(*path)
	if err != nil {
		return err
	}
	defer a.Close()
	st, err := a.store.ReindexKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys reindex: %w", err)
	}
	fmt.Fprintf(e.stdout, "indexed %d keys\n", st.Keys)
	return nil
}

// revokeUserKeys is `keys revoke --user U`: every key of U, at O(U's keys). pos are the
// positional arguments, which must be none with --user and an ID without.
func (e env) revokeUserKeys(ctx context.Context, path, user string, pos []string) error {
	switch {
	case user == "":
		return usagef("keys revoke: missing ID (usage: academy-gateway keys revoke [flags] ID, or keys revoke --user USER)")
	case len(pos) > 0:
		return usagef("keys revoke: give one key id or --user USER, not both")
	case !tokens.ValidUser(user):
		return usagef("keys revoke: --user must be 1-128 letters, digits or ._@+-")
	}
	a, err := e.openForCLI(path)
	if err != nil {
		return err
	}
	defer a.Close()
	keys, err := a.store.DeleteUserKeys(ctx, user)
	if err != nil {
		return err
	}
	for _, k := range keys {
		a.publish(ctx, webhooks.KeyRevoked(time.Now(), k.User, k.ID))
		a.audit.Record(audit.KeyRevoked, audit.FromCLI, zap.String("user", k.User), zap.String("key_id", k.ID))
		fmt.Fprintf(e.stdout, "revoked key %s of %s\n", k.ID, k.User)
	}
	fmt.Fprintf(e.stdout, "revoked %d keys of %s\n", len(keys), user)
	return nil
}

// listKeys prints the keys of user (or of everyone) page by page.
func (e env) listKeys(ctx context.Context, a *app, user string, asJSON bool) error {
	if user != "" && !tokens.ValidUser(user) {
		return usagef("keys list: --user must be 1-128 letters, digits or ._@+-")
	}
	out := newLister(e.stdout, asJSON, "keys", "ID\tUSER\tSCOPES\tNAME\tCREATED\tLAST USED")
	return streamPages(out, func(cursor string) ([]tokens.APIKey, string, error) {
		return a.store.KeysPage(ctx, user, cursor, tokens.MaxPageSize)
	}, func(k tokens.APIKey) error {
		if asJSON {
			return out.item(admin.ToKeyJSON(k))
		}
		return out.row("%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.User, scopeText(k.Scopes), k.Name, timeText(k.CreatedAt), timeText(k.LastUsedAt))
	})
}

// streamPages prints every item of a paged listing, one page in memory at a time: fetch returns
// the page at a cursor and the next cursor ("" after the last page), emit writes one item.
func streamPages[T any](out lister, fetch func(cursor string) ([]T, string, error), emit func(T) error) error {
	for cursor := ""; ; {
		items, next, err := fetch(cursor)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := emit(it); err != nil {
				return err
			}
		}
		if next == "" {
			return out.close()
		}
		cursor = next
	}
}

// listConnections prints every connection page by page.
func (e env) listConnections(ctx context.Context, a *app, asJSON bool) error {
	out := newLister(e.stdout, asJSON, "connections", connectionsHeader)
	return streamPages(out, func(cursor string) ([]tokens.Connection, string, error) {
		return a.store.ConnectionsPage(ctx, cursor, tokens.MaxPageSize)
	}, func(c tokens.Connection) error {
		if asJSON {
			return out.item(admin.ToConnectionJSON(c))
		}
		return connectionRow(out, c)
	})
}

// connectionsHeader heads the table of connections list and connections show; connectionRow is
// one of its rows.
const connectionsHeader = "USER\tSTATUS\tSCOPES\tACADEMY USER\tACCESS EXPIRES\tREFRESH EXPIRES\tUPDATED"

func connectionRow(out lister, c tokens.Connection) error {
	return out.row("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.User, c.Status, scopeText(c.Scopes), c.AcademyUser,
		timeText(c.AccessExpiresAt), timeText(c.RefreshExpiresAt), timeText(c.UpdatedAt))
}

// connectionsPending is `connections pending [--json]`: every user holding keys without an
// active connection, with key count and last use (the rows of GET /admin/users).
func (e env) connectionsPending(ctx context.Context, args []string) error {
	fs, path := e.newFlags("connections pending")
	asJSON := fs.Bool("json", false, "print JSON: the users array of GET /admin/users, only those with keys and no active connection")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	a, err := e.openForCLI(*path)
	if err != nil {
		return err
	}
	defer a.Close()
	out := newLister(e.stdout, *asJSON, "users", "USER\tSTATUS\tKEYS\tLAST USED")
	return streamPages(out, func(cursor string) ([]tokens.UserSummary, string, error) {
		return a.store.UsersPage(ctx, cursor, tokens.MaxPageSize)
	}, func(u tokens.UserSummary) error {
		switch {
		case u.Status == tokens.StatusActive || u.Keys == 0:
			return nil // connected, or no caller waits for a link
		case *asJSON:
			return out.item(admin.ToUserJSON(u))
		}
		return out.row("%s\t%s\t%d\t%s\n", u.User, u.Status, u.Keys, timeText(u.LastUsedAt))
	})
}

// authorizeJSONLine is one line of `connections authorize --json`: JSON Lines, one object per
// user, so a script can mail a batch of links.
type authorizeJSONLine struct {
	User         string    `json:"user"`
	AuthorizeURL string    `json:"authorize_url"`
	ExpiresAt    time.Time `json:"expires_at"`
}

// connectionsAuthorize is `connections authorize [--json] U [U…]`: one single-use link per user.
// Every user id is checked before the first link is issued.
func (e env) connectionsAuthorize(ctx context.Context, args []string) error {
	fs, path := e.newFlags("connections authorize")
	asJSON := fs.Bool("json", false, "print one JSON object per line: user, authorize_url, expires_at")
	newIdentity := newIdentityFlag(fs, "authorize")
	users, err := parse(fs, args) // at least one (the commands table)
	if err != nil {
		return err
	}
	for _, u := range users {
		if !tokens.ValidUser(u) {
			return usagef("connections authorize: %q is not a user id (1-128 letters, digits or ._@+-)", u)
		}
	}
	a, err := e.openForCLI(*path)
	if err != nil {
		return err
	}
	defer a.Close()
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false)
	for _, u := range users {
		link, exp, err := a.onboard.Authorize(ctx, u, *newIdentity)
		if err != nil {
			return fmt.Errorf("connections authorize %s: %w", u, err)
		}
		a.audit.Record(audit.LinkIssued, audit.FromCLI, zap.String("user", u), zap.Bool("allow_new_identity", *newIdentity))
		if *asJSON {
			err = enc.Encode(authorizeJSONLine{User: u, AuthorizeURL: link, ExpiresAt: exp.UTC()})
		} else {
			_, err = fmt.Fprintf(e.stdout, "Send this link to %s (single use, valid until %s):\n%s\n", u, exp.Format(time.RFC3339), link)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lister prints a list as it is read.
type lister interface {
	item(v any) error
	row(format string, args ...any) error
	close() error
}

// newLister returns the JSON list {"NAME": […]} with asJSON, else the table under header.
func newLister(w io.Writer, asJSON bool, name, header string) lister {
	if asJSON {
		return newJSONList(w, name)
	}
	return newTable(w, header)
}

// jsonList streams {"NAME": [item, …]} one item at a time.
type jsonList struct {
	w    io.Writer
	name string
	n    int
}

func newJSONList(w io.Writer, name string) *jsonList { return &jsonList{w: w, name: name} }

func (l *jsonList) item(v any) error {
	b, err := json.MarshalIndent(v, "    ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n    "
	if l.n == 0 {
		sep = fmt.Sprintf("{\n  %q: [\n    ", l.name)
	}
	l.n++
	_, err = fmt.Fprintf(l.w, "%s%s", sep, b)
	return err
}

func (l *jsonList) row(string, ...any) error { return errors.New("jsonList: row") }

func (l *jsonList) close() error {
	var err error
	if l.n == 0 {
		_, err = fmt.Fprintf(l.w, "{\n  %q: []\n}\n", l.name)
	} else {
		_, err = io.WriteString(l.w, "\n  ]\n}\n")
	}
	return err
}

// table prints aligned rows, flushing every page so a long list shows as it comes; the columns
// of one page are aligned among themselves.
type table struct {
	w      io.Writer
	tw     *tabwriter.Writer
	header string
	rows   int
}

func newTable(w io.Writer, header string) *table {
	t := &table{w: w, header: header}
	t.reset()
	return t
}

func (t *table) reset() {
	t.tw = tabwriter.NewWriter(t.w, 0, 4, 2, ' ', 0)
	if t.header != "" {
		fmt.Fprintln(t.tw, t.header)
		t.header = ""
	}
}

func (t *table) item(any) error { return errors.New("table: item") }

func (t *table) row(format string, args ...any) error {
	fmt.Fprintf(t.tw, format, args...)
	if t.rows++; t.rows%tokens.MaxPageSize == 0 {
		if err := t.tw.Flush(); err != nil {
			return err
		}
		t.reset()
	}
	return nil
}

func (t *table) close() error { return t.tw.Flush() }
