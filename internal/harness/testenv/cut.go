package testenv

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Cuttable is a TCP proxy in front of one of the stack's servers that a test
// can cut off, as an outage would: Cut closes every connection and resets new
// ones until Restore. It is test plumbing only (the soak harness has a richer
// fault proxy).
type Cuttable struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

// NewCuttable proxies to target (host:port) until the test ends.
func NewCuttable(t testing.TB, target string) *Cuttable {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &Cuttable{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go c.serve()
	t.Cleanup(func() { _ = ln.Close(); c.Cut() })
	return c
}

// Addr is the proxy's host:port.
func (c *Cuttable) Addr() string { return c.ln.Addr().String() }

// URL returns u (a server URL) pointing at the proxy instead.
func (c *Cuttable) URL(t testing.TB, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	require.NoError(t, err)
	p.Host = c.Addr()
	return p.String()
}

// Cut closes every open connection and refuses new ones.
func (c *Cuttable) Cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = true
	for conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = map[net.Conn]bool{}
}

// Restore lets connections through again.
func (c *Cuttable) Restore() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = false
}

func (c *Cuttable) serve() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.down {
			c.mu.Unlock()
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			c.mu.Unlock()
			_ = in.Close()
			continue
		}
		c.conns[in], c.conns[out] = true, true
		c.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
		go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
	}
}
