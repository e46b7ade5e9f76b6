// Command h1floor is a measurement, not a gateway: the floor of a Go HTTP/1.1 proxy that owns its
// server loop instead of using net/http's server and httputil.ReverseProxy. One goroutine per
// caller connection reads a request (http.ReadRequest), maps x-api-key to a bearer token from
// KEYS_FILE (like the harness's goproxy), writes the request on a pooled upstream connection,
// reads the response (http.ReadResponse) and writes it back. No timeouts, no hop-by-hop
// handling, no hardening of any kind: it shows what such a loop costs, for docs/benchmarks.md
// ("Round three: not done, and why"). It speaks the shared harness's GATEWAY_CMD interface:
//
//	GATEWAY_NAME=h1floor GATEWAY_CMD="exec $PWD/h1floor" ../shared/bench/run.sh
package main

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

// upstream is a pool of keep-alive connections to one address.
type upstream struct {
	addr string
	mu   sync.Mutex
	idle []*upConn
}

type upConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func (u *upstream) get() (*upConn, error) {
	u.mu.Lock()
	if n := len(u.idle); n > 0 {
		c := u.idle[n-1]
		u.idle = u.idle[:n-1]
		u.mu.Unlock()
		return c, nil
	}
	u.mu.Unlock()
	c, err := net.Dial("tcp", u.addr)
	if err != nil {
		return nil, err
	}
	return &upConn{c, bufio.NewReader(c), bufio.NewWriter(c)}, nil
}

func (u *upstream) put(c *upConn) {
	u.mu.Lock()
	u.idle = append(u.idle, c)
	u.mu.Unlock()
}

// serve answers the requests of one caller connection in order until it fails or closes.
func serve(c net.Conn, up *upstream, tokens map[string]string) {
	defer c.Close()
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	buf := make([]byte, 8<<10)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		tok, ok := tokens[req.Header.Get("X-Api-Key")]
		if !ok {
			bw.WriteString("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
			if bw.Flush() != nil {
				return
			}
			continue
		}
		u, err := up.get()
		if err != nil {
			return
		}
		u.bw.WriteString(req.Method + " " + req.RequestURI + " HTTP/1.1\r\nHost: " + up.addr + "\r\nAuthorization: Bearer " + tok + "\r\n")
		for k, vs := range req.Header {
			if k != "X-Api-Key" && k != "Connection" {
				for _, v := range vs {
					u.bw.WriteString(k + ": " + v + "\r\n")
				}
			}
		}
		u.bw.WriteString("\r\n")
		if u.bw.Flush() != nil {
			return
		}
		resp, err := http.ReadResponse(u.br, req)
		if err != nil || resp.ContentLength < 0 {
			return // this floor only measures answers with a Content-Length
		}
		bw.WriteString("HTTP/1.1 " + resp.Status + "\r\n")
		for k, vs := range resp.Header {
			if k != "Content-Length" {
				for _, v := range vs {
					bw.WriteString(k + ": " + v + "\r\n")
				}
			}
		}
		bw.WriteString("Content-Length: " + strconv.FormatInt(resp.ContentLength, 10) + "\r\n\r\n")
		if _, err := io.CopyBuffer(bw, resp.Body, buf); err != nil {
			return
		}
		up.put(u)
		if bw.Flush() != nil {
			return
		}
	}
}

func main() {
	addr := os.Getenv("LISTEN_ADDR")
	if !strings.HasPrefix(addr, "127.") {
		log.Fatalf("LISTEN_ADDR %q: loopback only", addr)
	}
	b, err := os.ReadFile(os.Getenv("KEYS_FILE"))
	if err != nil {
		log.Fatal(err)
	}
	tokens := map[string]string{}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && !strings.HasPrefix(k, "#") {
			tokens[k] = strings.TrimSpace(v)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	up := &upstream{addr: os.Getenv("UPSTREAM_ADDR")}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c, up, tokens)
	}
}
