package netfault_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/netfault"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type testBundle struct {
	net  *netfault.Net
	addr string
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	t.Parallel()
	n := netfault.New()
	t.Cleanup(n.Close)
	addr, err := n.Add("echo", echo(t))
	require.NoError(t, err)
	return &testBundle{net: n, addr: addr}
}

func roundTrip(conn net.Conn) (time.Duration, error) {
	start := time.Now()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, net.ErrClosed
	}
	return time.Since(start), nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLatencyAndClear(t *testing.T) {
	b := setup(t)
	c := dial(t, b.addr)
	_, err := roundTrip(c)
	require.NoError(t, err)
	f1, err := b.net.Latency("echo", 100*time.Millisecond, 0)
	require.NoError(t, err)
	d, err := roundTrip(c)
	require.NoError(t, err)
	require.GreaterOrEqual(t, d, 200*time.Millisecond, "both directions delayed, also on an open connection")
	// Overlapping windows: each removes only its own toxics.
	f2, err := b.net.Latency("echo", 100*time.Millisecond, 0)
	require.NoError(t, err)
	require.NoError(t, b.net.Remove(f1))
	d, err = roundTrip(c)
	require.NoError(t, err)
	require.GreaterOrEqual(t, d, 200*time.Millisecond, "the second window is still in force")
	require.NoError(t, b.net.Remove(f2))
	d, err = roundTrip(dial(t, b.addr))
	require.NoError(t, err)
	require.Less(t, d, 100*time.Millisecond)
	require.EqualValues(t, 4, b.net.Counts()["echo/latency"])
	_, err = b.net.Latency("echo", time.Second, 0)
	require.NoError(t, err)
	require.NoError(t, b.net.Clear("echo"))
	d, err = roundTrip(dial(t, b.addr))
	require.NoError(t, err)
	require.Less(t, d, 100*time.Millisecond, "Clear removes everything")
}

func TestOutageRefusesAndClosesThenRecovers(t *testing.T) {
	b := setup(t)
	c := dial(t, b.addr)
	_, err := roundTrip(c)
	require.NoError(t, err)
	require.NoError(t, b.net.Down("echo"))
	require.NoError(t, b.net.Down("echo")) // overlapping outage windows
	require.True(t, b.net.IsDown("echo"))
	require.NoError(t, b.net.Up("echo"))
	require.True(t, b.net.IsDown("echo"), "the second outage is still in force")
	_, err = roundTrip(c)
	require.Error(t, err, "open connections are closed")
	_, err = net.DialTimeout("tcp", b.addr, time.Second)
	require.Error(t, err, "new connections are refused")
	require.NoError(t, b.net.Heal())
	_, err = roundTrip(dial(t, b.addr))
	require.NoError(t, err, "the same address works again")
	require.EqualValues(t, 2, b.net.Counts()["echo/outage"])
}

func TestResets(t *testing.T) {
	b := setup(t)
	_, err := b.net.Resets("echo", 1, 0)
	require.NoError(t, err)
	c := dial(t, b.addr)
	_, err = roundTrip(c)
	require.Error(t, err, "the connection is reset once it carries data")
}
