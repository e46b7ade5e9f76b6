package main

import (
	"flag"

	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/config"
)

// cliAudit is the audit logger of management commands: on stderr in the configured format, at
// info whatever log.level says, so the trail of a change is never filtered out.
func (e env) cliAudit(cfg config.Config) audit.Logger {
	return audit.New(newLogger(config.Log{Level: "info", Format: cfg.Log.Format}, e.stderr))
}

// newIdentityFlag registers --new-identity on `connections authorize` (on other subcommands it
// is not a flag) and returns its value.
func newIdentityFlag(fs *flag.FlagSet, sub string) *bool {
	if sub != "authorize" {
		return new(bool)
	}
	return fs.Bool("new-identity", false, "let the link connect an Academy account other than the one the user had")
}
