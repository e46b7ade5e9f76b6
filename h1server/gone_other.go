//go:build !unix

package h1server

import "syscall"

// gone reports false: there is no way to look at a socket without reading it here, so a request
// whose caller left runs to its end.
func gone(syscall.RawConn) bool { return false }
