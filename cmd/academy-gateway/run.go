package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"

	"github.com/academy-gateway/academy-gateway/config"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise the module version.
var version = ""

// env is how the process sees its surroundings; tests pass their own.
type env struct {
	getenv func(string) string
	// environ lists the environment as NAME=value, for the check of unknown ACADEMY_GATEWAY_*
	// variables; nil skips that check (run, as tests call it).
	environ func() []string
	stdout  io.Writer
	stderr  io.Writer
	// redisLog receives go-redis's log lines for the command's logger (nil: go-redis's default).
	redisLog *redisLog
}

// run executes one command. It is main without the process: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return env{getenv: getenv, stdout: stdout, stderr: stderr}.run(ctx, args)
}

// run dispatches args to their command; a --help that was answered is success.
func (e env) run(ctx context.Context, args []string) error {
	err := e.dispatch(ctx, args)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func (e env) dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printUsage(e.stderr, "")
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
	case "version", "--version", "-version":
		return e.version(rest)
	case "help", "-h", "--help", "-help":
		if len(rest) > 0 && !isHelp(rest[0]) { // help CMD [SUB]: that command's --help
			return e.dispatch(ctx, append(slices.Clone(rest), "--help"))
		}
		printUsage(e.stdout, "")
		return nil
	}
	return usagef("unknown command %q (see academy-gateway --help)", cmd)
}

// version is the version command (also --version).
func (e env) version(args []string) error {
	fs, _ := e.newFlags("version")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	v, commit := buildVersion()
	fmt.Fprintf(e.stdout, "academy-gateway %s (commit %s, %s)\n", v, commit, runtime.Version())
	return nil
}

// loadConfig resolves and loads the configuration; its errors are usage errors (exit 2).
func (e env) loadConfig(path string) (config.Config, error) {
	var environ []string
	if e.environ != nil {
		environ = e.environ()
	}
	cfg, err := config.LoadEnv(config.Path(path, e.getenv), e.getenv, environ)
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
