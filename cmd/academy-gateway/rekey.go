package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/audit"
)

// errUnreadable makes rekey exit 1 when some record no configured key opens.
var errUnreadable = errors.New("some connections could not be read with any configured key")

// rekey is the rekey command (docs/reference.md §2): every stored connection re-sealed with the first of
// security.encryption_keys, safe while replicas serve (tokens.Store.Rekey).
func (e env) rekey(ctx context.Context, args []string) error {
	fs, path := e.newFlags("rekey")
	dryRun := fs.Bool("dry-run", false, "report what would be re-encrypted; write nothing")
	if _, err := parse(fs, args); err != nil { // no arguments (the commands table)
		return err
	}
	a, err := e.openForCLI(*path)
	if err != nil {
		return err
	}
	defer a.Close()
	rep, err := a.store.Rekey(ctx, *dryRun)
	if err != nil {
		return err
	}
	if !*dryRun {
		a.audit.Record(audit.Rekey, audit.FromCLI, zap.Int("reencrypted", rep.Reencrypted),
			zap.Int("current", rep.Current), zap.Strings("unreadable", rep.Unreadable))
	}
	verb := "re-encrypted"
	if *dryRun {
		verb = "would re-encrypt"
	}
	fmt.Fprintf(e.stdout, "%s %d, already current %d, unreadable %d\n", verb, rep.Reencrypted, rep.Current, len(rep.Unreadable))
	if len(rep.Unreadable) > 0 {
		fmt.Fprintf(e.stdout, "no configured key opens the connection of: %s (left untouched; revoke them or add the old key back)\n",
			strings.Join(rep.Unreadable, ", "))
		return fmt.Errorf("rekey: %w", errUnreadable)
	}
	return nil
}
