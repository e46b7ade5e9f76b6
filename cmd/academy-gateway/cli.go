package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/academy-gateway/academy-gateway/admin"
	"github.com/academy-gateway/academy-gateway/scope"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// The management commands work straight on the configured Redis: no gateway needs to run.

// openForCLI loads the configuration and wires the app without listeners, logging warnings only.
func (e env) openForCLI(path string) (*app, error) {
	cfg, err := e.loadConfig(path)
	if err != nil {
		return nil, err
	}
	cfg.Log.Level = "warn"
	return newApp(cfg, newLogger(cfg.Log, e.stderr), appOptions{})
}

func (e env) keys(ctx context.Context, args []string) error {
	if err := checkSubcommand("keys", args, "create", "list", "revoke"); err != nil {
		return err
	}
	fs, path := e.newFlags("keys " + args[0])
	asJSON := fs.Bool("json", false, "print JSON")
	switch args[0] {
	case "create":
		user := fs.String("user", "", "the user the key acts for (required)")
		scopes := fs.String("scopes", "", "comma-separated ceiling: read,write,delete (default: whatever the connection grants)")
		name := fs.String("name", "", "a label for the key")
		existing := fs.String("key", "", "register this existing legacy v1 key instead of issuing a new one")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		sc, err := parseScopes(*scopes)
		if err != nil {
			return err
		}
		if !tokens.ValidUser(*user) {
			return usagef("keys create: --user must be 1-128 letters, digits or ._@+-")
		}
		a, err := e.openForCLI(*path)
		if err != nil {
			return err
		}
		defer a.Close()
		k, key, err := a.store.IssueKey(ctx, *user, sc, *name, *existing)
		if errors.Is(err, tokens.ErrMalformedKey) {
			return usageError{fmt.Errorf("--key: %w", err)}
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, admin.CreatedKeyJSON{ID: k.ID, Key: key, User: k.User,
				Scopes: k.Scopes, Name: k.Name, CreatedAt: k.CreatedAt})
		}
		fmt.Fprintf(e.stdout, "created key %s for %s (scopes: %s)\n%s\nThe key is shown only now; it is stored as a hash.\n",
			k.ID, k.User, scopeText(k.Scopes), key)
		return nil
	case "list":
		user := fs.String("user", "", "only this user's keys")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		a, err := e.openForCLI(*path)
		if err != nil {
			return err
		}
		defer a.Close()
		keys, err := a.store.Keys(ctx, *user)
		if err != nil {
			return err
		}
		if *asJSON {
			out := make([]admin.KeyJSON, len(keys))
			for i, k := range keys {
				out[i] = admin.ToKeyJSON(k)
			}
			return writeJSON(e.stdout, map[string]any{"keys": out})
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSER\tSCOPES\tNAME\tCREATED\tLAST USED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.User, scopeText(k.Scopes), k.Name, timeText(k.CreatedAt), timeText(k.LastUsedAt))
		}
		return tw.Flush()
	case "revoke":
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("keys revoke: want one key id")
		}
		a, err := e.openForCLI(*path)
		if err != nil {
			return err
		}
		defer a.Close()
		k, err := a.store.DeleteKey(ctx, pos[0])
		if errors.Is(err, tokens.ErrNotFound) {
			return fmt.Errorf("keys revoke: no key with id %s", pos[0])
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked key %s of %s\n", k.ID, k.User)
		return nil
	}
	panic("unreachable: subcommand checked above")
}

// parseScopes reads a --scopes list: read, write and delete only.
func parseScopes(s string) ([]string, error) {
	out, err := scope.ParseList(scope.Fields(s), scope.KeyScopes)
	if err != nil {
		return nil, usagef("--scopes: %v", err)
	}
	return out, nil
}

func (e env) connections(ctx context.Context, args []string) error {
	if err := checkSubcommand("connections", args, "authorize", "list", "show", "revoke"); err != nil {
		return err
	}
	fs, path := e.newFlags("connections " + args[0])
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	wantUser := args[0] != "list"
	if wantUser && (len(pos) != 1 || !tokens.ValidUser(pos[0])) {
		return usagef("connections %s: want one user id", args[0])
	}
	if !wantUser && len(pos) != 0 {
		return usagef("connections list: takes no arguments")
	}
	a, err := e.openForCLI(*path)
	if err != nil {
		return err
	}
	defer a.Close()
	switch args[0] {
	case "authorize":
		link, exp, err := a.onboard.Authorize(ctx, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, map[string]any{"authorize_url": link, "expires_at": exp})
		}
		fmt.Fprintf(e.stdout, "Send this link to %s (single use, valid until %s):\n%s\n", pos[0], exp.Format(time.RFC3339), link)
		return nil
	case "list":
		conns, err := a.store.Connections(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			out := make([]admin.ConnectionJSON, len(conns))
			for i, c := range conns {
				out[i] = admin.ToConnectionJSON(c)
			}
			return writeJSON(e.stdout, map[string]any{"connections": out})
		}
		return printConnections(e.stdout, conns)
	case "show":
		c, err := a.store.Connection(ctx, pos[0])
		if errors.Is(err, tokens.ErrNotConnected) {
			return fmt.Errorf("connections show: %s has no connection", pos[0])
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, admin.ToConnectionJSON(c))
		}
		return printConnections(e.stdout, []tokens.Connection{c})
	case "revoke":
		if err := a.mgr.Revoke(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked the connection of %s\n", pos[0])
		return nil
	}
	panic("unreachable: subcommand checked above")
}

func printConnections(w io.Writer, conns []tokens.Connection) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSTATUS\tSCOPES\tACADEMY USER\tACCESS EXPIRES\tREFRESH EXPIRES\tUPDATED")
	for _, c := range conns {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.User, c.Status, scopeText(c.Scopes), c.AcademyUser,
			timeText(c.AccessExpiresAt), timeText(c.RefreshExpiresAt), timeText(c.UpdatedAt))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func scopeText(s []string) string {
	if len(s) == 0 {
		return "(all granted)"
	}
	return strings.Join(s, ",")
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// checkSubcommand refuses a missing or unknown subcommand before anything is loaded.
func checkSubcommand(cmd string, args []string, subs ...string) error {
	want := strings.Join(subs[:len(subs)-1], ", ") + " or " + subs[len(subs)-1]
	if len(args) == 0 {
		return usagef("%s: want %s", cmd, want)
	}
	if !slices.Contains(subs, args[0]) {
		return usagef("%s: unknown subcommand %q (want %s; flags follow the subcommand)", cmd, args[0], want)
	}
	return nil
}
