package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/academy-gateway/academy-gateway/config"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the module version.
var version = ""

const usage = `usage: academy-gateway <command> [--config FILE] [flags]

commands:
  serve                         run the gateway until SIGINT/SIGTERM
  demo                          embedded Redis + Academy simulator + gateway + a connected demo user
  sim [--listen ADDR] [--minute DUR]
                                run the Academy API v2 simulator
  keys create --user U [--scopes read,write,delete] [--name TEXT] [--key EXISTING] [--json]
  keys list [--user U] [--json]
  keys revoke ID
  connections authorize [--new-identity] U [--json]
  connections list [--json] | connections show U [--json] | connections revoke U
  rekey [--dry-run]             re-encrypt every connection with the first encryption key
  check-config                  validate and print the effective configuration (secrets masked)
  version                       print version, commit and Go version
`

// env is how the process sees its surroundings; tests pass their own.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

// run executes one command. It is main without the process: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	e := env{getenv: getenv, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return e.serve(ctx, rest)
	case "demo":
		return e.demo(ctx, rest)
	case "sim":
		return e.sim(ctx, rest)
	case "keys":
		return e.keys(ctx, rest)
	case "connections":
		return e.connections(ctx, rest)
	case "rekey":
		return e.rekey(ctx, rest)
	case "check-config":
		return e.checkConfig(rest)
	case "version":
		v, commit := buildVersion()
		fmt.Fprintf(stdout, "academy-gateway %s (commit %s, %s)\n", v, commit, runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usagef("unknown command %q", cmd)
}

// newFlags returns a flag set for a command, with the --config flag every command takes.
func (e env) newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	path := fs.String("config", "", "configuration file (default: $ACADEMY_GATEWAY_CONFIG, else ./config.yaml, else built-in defaults)")
	return fs, path
}

// parse parses args (flags may follow positional arguments) and returns the positionals.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err} // including -h: usage was printed, exit 2
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// loadConfig resolves and loads the configuration; its errors are usage errors (exit 2).
func (e env) loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(config.Path(path, e.getenv), e.getenv)
	if err != nil {
		return config.Config{}, usageError{err}
	}
	return cfg, nil
}

func (e env) checkConfig(args []string) error {
	fs, path := e.newFlags("check-config")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := e.loadConfig(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "# configuration is valid (%s)\n", describePath(config.Path(*path, e.getenv)))
	_, err = e.stdout.Write(cfg.Masked().YAML())
	return err
}

func describePath(p string) string {
	if p == "" {
		return "built-in defaults"
	}
	return p
}

func buildVersion() (v, commit string) {
	v, commit = version, "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v, commit
}
