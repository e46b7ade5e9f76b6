//go:build !unix

package proxy

// peekable cannot look at a socket without reading on this system: an idle connection the
// upstream closed is found when it is next used (and the request sent again on a new one).
func peekable(uintptr) bool { return false }
