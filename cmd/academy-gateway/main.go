// Command academy-gateway is an auth gateway that lets legacy Make App Academy API v1 callers
// (x-api-key) reach the Academy API v2 (OAuth2) unchanged. See README.md and docs/reference.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rl := &redisLog{}
	redis.SetLogger(rl) // process-wide, so set here once; see redisLog
	e := env{getenv: os.Getenv, environ: os.Environ, stdout: os.Stdout, stderr: os.Stderr, redisLog: rl}
	err := e.run(ctx, os.Args[1:])
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// usageError is a mistake in the command line or configuration: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitCode prints err and maps it to the exit status of docs/reference.md §2: 0 ok, 2 usage or
// configuration, 1 anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "academy-gateway:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
