package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// The command line of every command is parsed by newFlags + parse below, from the one table of
// commands: their usage lines, --help output and positional-argument checks cannot drift apart.

// commandSpec is one command's command line as usage shows it and parse enforces it.
type commandSpec struct {
	name     string // "keys create"
	required string // required flags as usage shows them ("--user USER"); "" for none
	args     string // positional arguments as usage shows them ("ID", "U [U…]"); "" for none
	min, max int    // how many positional arguments it takes; max < 0: any number
	summary  string // what it does, one line
}

// commands lists every command, in the order of the usage text. A command added to the CLI gets
// its row here; parse refuses positional arguments of a command without one.
var commands = []commandSpec{
	{name: "serve", summary: "run the gateway (proxy and ops listeners) until SIGINT/SIGTERM"},
	{name: "demo", summary: "embedded Redis + Academy simulator + gateway + a connected demo user; prints curl lines"},
	{name: "sim", summary: "run the Academy API v2 simulator"},
	{name: "keys create", required: "--user USER", summary: "issue an API key for a user, or register an existing legacy v1 key (--key)"},
	{name: "keys list", summary: "list API keys (ids, users, scopes, names, times; never the key)"},
	{name: "keys revoke", args: "ID", min: 0, max: 1, summary: "revoke one API key (or, with --user USER, every key of a user)"},
	{name: "keys import", args: "FILE", min: 1, max: 1, summary: "register many existing v1 keys: CSV user,key,scopes,name or JSON Lines; - reads stdin"},
	{name: "keys reindex", summary: "index keys written before the per-user key index (safe while replicas serve)"},
	{name: "connections authorize", args: "USER [USER…]", min: 1, max: -1, summary: "print a single-use onboarding link for each user"},
	{name: "connections pending", summary: "users holding keys without an active connection: who still needs a link"},
	{name: "connections list", summary: "status of every user's connection"},
	{name: "connections show", args: "USER", min: 1, max: 1, summary: "status of one user's connection"},
	{name: "connections revoke", args: "USER", min: 1, max: 1, summary: "invalidate a user's connection upstream and delete its tokens"},
	{name: "rekey", summary: "re-encrypt every stored connection with the first encryption key"},
	{name: "check-config", summary: "validate the configuration and print the effective values (secrets masked)"},
	{name: "version", summary: "print version, commit and Go version"},
}

// lookupCommand returns the table row of a command ("keys create").
func lookupCommand(name string) (commandSpec, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return commandSpec{}, false
}

// errHelpShown reports that --help was asked for and answered: run turns it into success.
var errHelpShown = errors.New("help shown")

// newFlags returns a flag set for a command (a name of the commands table), with the --config
// flag every command takes. Help goes to stdout; parse prints nothing else.
func (e env) newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stdout) // where --help goes; parse silences the flag package's own messages
	fs.Usage = func() {}
	path := fs.String("config", "", "read the configuration from `FILE` (default: $ACADEMY_GATEWAY_CONFIG, else ./config.yaml, else built-in defaults)")
	return fs, path
}

// parse parses args for the command of fs and returns its positional arguments, checked against
// the commands table. Flags may come before or after positional arguments; "--" ends the flags.
// --help (or -h) prints the command's usage to stdout and returns errHelpShown; a bad flag or a
// wrong number of arguments is a usageError that says so once and points at --help.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	spec, known := lookupCommand(fs.Name())
	if !known {
		spec = commandSpec{name: fs.Name()}
	}
	out := fs.Output()
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(out, fs, spec)
			return nil, errHelpShown
		}
		if err != nil {
			msg := err.Error()
			if f, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
				msg = "unknown flag -" + f // the flag package names it with one dash
			}
			return nil, usagef("%s: %s (see academy-gateway %s --help)", spec.name, msg, spec.name)
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < spec.min:
		return nil, usagef("%s: missing %s (usage: %s)", spec.name, spec.args, usageLine(spec))
	case spec.max >= 0 && len(pos) > spec.max:
		if spec.max == 0 {
			return nil, usagef("%s: takes no arguments, got %q (usage: %s)", spec.name, pos[0], usageLine(spec))
		}
		return nil, usagef("%s: unexpected argument %q (usage: %s)", spec.name, pos[spec.max], usageLine(spec))
	}
	return pos, nil
}

// usageLine is the synopsis of one command: "academy-gateway keys revoke [flags] ID".
func usageLine(c commandSpec) string {
	s := "academy-gateway " + c.name
	if c.required != "" {
		s += " " + c.required
	}
	s += " [flags]"
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

// printCommandHelp writes a command's --help: synopsis, summary and flags with their defaults.
func printCommandHelp(w io.Writer, fs *flag.FlagSet, c commandSpec) {
	fmt.Fprintf(w, "usage: %s\n", usageLine(c))
	if c.summary != "" {
		fmt.Fprintf(w, "\n%s.\n", upperFirst(c.summary))
	}
	fmt.Fprintf(w, "\nflags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if name != "" {
			head += " " + name
		}
		if f.DefValue != "" && f.DefValue != "false" {
			text += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", head, text)
	})
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// printUsage writes the overview of every command whose name starts with prefix ("" for all).
func printUsage(w io.Writer, prefix string) {
	if prefix == "" {
		fmt.Fprintf(w, "usage: academy-gateway <command> [flags] [arguments]\n\ncommands:\n")
	} else {
		fmt.Fprintf(w, "usage: academy-gateway %s <subcommand> [flags] [arguments]\n\nsubcommands:\n", prefix)
	}
	for _, c := range commands {
		if prefix != "" && !strings.HasPrefix(c.name, prefix+" ") {
			continue
		}
		line := c.name
		if c.required != "" {
			line += " " + c.required
		}
		if c.args != "" {
			line += " " + c.args
		}
		fmt.Fprintf(w, "  %-28s %s\n", line, c.summary)
	}
	fmt.Fprintf(w, "\nEvery command takes --config FILE; academy-gateway <command> --help lists its flags.\n")
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}
