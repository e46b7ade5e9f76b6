package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/admin"
	"github.com/academy-gateway/academy-gateway/audit"
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
	a, err := newApp(cfg, e.logger(cfg.Log), appOptions{})
	if err == nil {
		a.audit = e.cliAudit(cfg)
	}
	return a, err
}

func (e env) keys(ctx context.Context, args []string) error {
	if len(args) > 0 { // fleet.go
		switch args[0] {
		case "import":
			return e.keysImport(ctx, args[1:])
		case "reindex":
			return e.keysReindex(ctx, args[1:])
		}
	}
	if err := e.checkSubcommand("keys", args, "create", "list", "revoke", "import", "reindex"); err != nil {
		return err
	}
	fs, path := e.newFlags("keys " + args[0])
	asJSON := fs.Bool("json", false, "print JSON")
	switch args[0] {
	case "create":
		user := fs.String("user", "", "the `USER` the key acts for (required)")
		scopes := fs.String("scopes", "", "the `SCOPES` the key may use, comma-separated: read,write,delete (default: whatever the connection grants)")
		name := fs.String("name", "", "a `TEXT` label for the key")
		existing := fs.String("key", "", "register this existing legacy v1 `KEY` instead of issuing a new one")
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
		if err := checkExistingKey(fs, *existing); err != nil {
			return err
		}
		a, err := e.openForCLI(*path)
		if err != nil {
			return err
		}
		defer a.Close()
		k, key, err := a.store.IssueKey(ctx, *user, sc, *name, *existing)
		if errors.Is(err, tokens.ErrMalformedKey) {
			return usageError{fmt.Errorf("keys create: --key: %w", err)}
		}
		if err != nil {
			return err
		}
		a.audit.Record(audit.KeyCreated, audit.FromCLI, zap.String("user", k.User), zap.String("key_id", k.ID),
			zap.Strings("scopes", k.Scopes), zap.Bool("registered_existing", *existing != ""))
		e.warnUnconnected(ctx, a, k.User)
		if *asJSON {
			return writeJSON(e.stdout, admin.CreatedKeyJSON{ID: k.ID, Key: key, User: k.User,
				Scopes: k.Scopes, Name: k.Name, CreatedAt: k.CreatedAt})
		}
		fmt.Fprintf(e.stdout, "created key %s for %s (scopes: %s)\n%s\nThe key is shown only now; it is stored as a hash.\n",
			k.ID, k.User, scopeText(k.Scopes), key)
		return nil
	case "list":
		user := fs.String("user", "", "only the keys of `USER`")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		a, err := e.openForCLI(*path)
		if err != nil {
			return err
		}
		defer a.Close()
		return e.listKeys(ctx, a, *user, *asJSON)
	case "revoke":
		user := fs.String("user", "", "revoke every key of `USER` instead of one key id")
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if *user != "" || len(pos) == 0 {
			return e.revokeUserKeys(ctx, *path, *user, pos)
		}
		a, err := e.openForCLI(*path)
		if err != nil {
			return err
		}
		defer a.Close()
		k, err := adminStore{a.store, a}.DeleteKey(ctx, pos[0])
		if errors.Is(err, tokens.ErrNotFound) {
			return fmt.Errorf("keys revoke: no key with id %s", pos[0])
		}
		if err != nil {
			return err
		}
		a.audit.Record(audit.KeyRevoked, audit.FromCLI, zap.String("user", k.User), zap.String("key_id", k.ID))
		fmt.Fprintf(e.stdout, "revoked key %s of %s\n", k.ID, k.User)
		return nil
	}
	panic("unreachable: subcommand checked above")
}

// checkExistingKey refuses a --key that was given but cannot be registered, before anything is
// opened. An empty --key is refused too: it is what `--key "$UNSET"` passes, and issuing a new
// key in its place would leave the legacy caller with a key it does not have.
func checkExistingKey(fs *flag.FlagSet, key string) error {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "key" })
	switch {
	case !given:
		return nil
	case key == "":
		return usagef("keys create: --key is empty (an unset variable?); leave --key out to issue a new key, or pass the legacy key: %s", tokens.KeyRule)
	case !tokens.WellFormed(key):
		return usagef("keys create: --key: %v: %s", tokens.ErrMalformedKey, tokens.KeyRule)
	}
	return nil
}

// warnUnconnected tells the operator, on stderr, that a key was made for a user who cannot use it
// yet: without an active connection every call answers 401 until the user is onboarded.
func (e env) warnUnconnected(ctx context.Context, a *app, user string) {
	c, err := a.store.Connection(ctx, user)
	switch {
	case errors.Is(err, tokens.ErrNotConnected):
		fmt.Fprintf(e.stderr, "warning: %s has no connection yet: calls with this key answer 401 not_connected until %s is onboarded (academy-gateway connections authorize %s)\n", user, user, user)
	case err == nil && c.Status == tokens.StatusReauthRequired:
		fmt.Fprintf(e.stderr, "warning: the connection of %s needs reauthorization: calls with this key answer 401 reauthorization_required until %s is onboarded again (academy-gateway connections authorize %s)\n", user, user, user)
	}
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
	if len(args) > 0 { // fleet.go
		switch args[0] {
		case "pending":
			return e.connectionsPending(ctx, args[1:])
		case "authorize":
			return e.connectionsAuthorize(ctx, args[1:])
		}
	}
	if err := e.checkSubcommand("connections", args, "authorize", "list", "show", "revoke", "pending"); err != nil {
		return err
	}
	fs, path := e.newFlags("connections " + args[0])
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if args[0] != "list" && !tokens.ValidUser(pos[0]) {
		return usagef("connections %s: %q is not a user id (1-128 letters, digits or ._@+-)", args[0], pos[0])
	}
	a, err := e.openForCLI(*path)
	if err != nil {
		return err
	}
	defer a.Close()
	switch args[0] {
	case "list":
		return e.listConnections(ctx, a, *asJSON)
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
		t := newTable(e.stdout, connectionsHeader)
		if err := connectionRow(t, c); err != nil {
			return err
		}
		return t.close()
	case "revoke":
		if err := (revoker{a}).Revoke(ctx, pos[0]); err != nil {
			return err
		}
		a.audit.Record(audit.ConnectionRevoked, audit.FromCLI, zap.String("user", pos[0]))
		fmt.Fprintf(e.stdout, "revoked the connection of %s\n", pos[0])
		return nil
	}
	panic("unreachable: subcommand checked above")
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

// checkSubcommand refuses a missing or unknown subcommand before anything is loaded; "--help"
// in its place prints the group's commands.
func (e env) checkSubcommand(cmd string, args []string, subs ...string) error {
	want := strings.Join(subs[:len(subs)-1], ", ") + " or " + subs[len(subs)-1]
	if len(args) == 0 {
		return usagef("%s: want %s (see academy-gateway %s --help)", cmd, want, cmd)
	}
	if isHelp(args[0]) {
		printUsage(e.stdout, cmd)
		return errHelpShown
	}
	if !slices.Contains(subs, args[0]) {
		return usagef("%s: unknown subcommand %q (want %s; flags follow the subcommand)", cmd, args[0], want)
	}
	return nil
}
