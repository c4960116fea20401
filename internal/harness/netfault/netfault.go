// Package netfault injects TCP faults between the migration's processes and
// their Postgres and SQS servers: latency, connection resets and outages. It
// embeds toxiproxy (github.com/Shopify/toxiproxy/v2) as a library, one proxy
// per dependency on 127.0.0.1, so no separate server has to be installed or
// started.
//
// An outage stops the proxy: its listener closes, so new connections are
// refused, and every open connection is closed, as when a server or the
// network between goes away. It is a test tool: nothing in the production
// binaries imports it.
package netfault

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Net is a set of TCP proxies with faults.
type Net struct {
	server *toxiproxy.ApiServer

	mu      sync.Mutex
	proxies map[string]*toxiproxy.Proxy
	counts  map[string]int64 // "<proxy>/<fault>" → times applied
	down    map[string]int   // outages in force (they may overlap)
	seq     int
}

// Fault is a set of toxics added together, to be removed together: windows
// of the same kind may overlap, each removes only its own.
type Fault struct {
	proxy  string
	toxics []string
}

// New returns an empty Net.
func New() *Net {
	return &Net{
		server:  toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()),
		proxies: map[string]*toxiproxy.Proxy{},
		counts:  map[string]int64{},
		down:    map[string]int{},
	}
}

// Add starts a proxy named name that listens on 127.0.0.1 (a free port) and
// forwards to upstream (host:port). It returns the address to connect to.
func (n *Net) Add(name, upstream string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.proxies[name]; ok {
		return "", fmt.Errorf("netfault: proxy %s exists", name)
	}
	p := toxiproxy.NewProxy(n.server, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return "", fmt.Errorf("netfault: start proxy %s to %s: %w", name, upstream, err)
	}
	n.proxies[name] = p
	return p.Listen, nil
}

func (n *Net) proxy(name string) (*toxiproxy.Proxy, error) {
	p, ok := n.proxies[name]
	if !ok {
		return nil, fmt.Errorf("netfault: no proxy %s", name)
	}
	return p, nil
}

func (n *Net) addToxic(name, toxic, stream string, toxicity float64, attrs string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, err := n.proxy(name)
	if err != nil {
		return "", err
	}
	n.seq++
	id := fmt.Sprintf("%s_%s_%d", toxic, stream, n.seq)
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`, id, toxic, stream, toxicity, attrs)
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		return "", fmt.Errorf("netfault: add %s to %s: %w", toxic, name, err)
	}
	n.counts[name+"/"+toxic]++
	return id, nil
}

// Latency delays the data of every connection through name by latency ±
// jitter, in both directions, until the returned Fault is removed.
func (n *Net) Latency(name string, latency, jitter time.Duration) (Fault, error) {
	attrs := fmt.Sprintf(`{"latency":%d,"jitter":%d}`, latency.Milliseconds(), jitter.Milliseconds())
	f := Fault{proxy: name}
	for _, stream := range []string{"downstream", "upstream"} {
		id, err := n.addToxic(name, "latency", stream, 1, attrs)
		if err != nil {
			_ = n.Remove(f)
			return Fault{}, err
		}
		f.toxics = append(f.toxics, id)
	}
	return f, nil
}

// Resets makes a share (0..1) of the connections through name reset (TCP RST)
// after they carried data for `after`, until the returned Fault is removed.
// New connections draw again.
func (n *Net) Resets(name string, share float64, after time.Duration) (Fault, error) {
	id, err := n.addToxic(name, "reset_peer", "upstream", share, fmt.Sprintf(`{"timeout":%d}`, after.Milliseconds()))
	if err != nil {
		return Fault{}, err
	}
	return Fault{proxy: name, toxics: []string{id}}, nil
}

// Remove removes the toxics of f.
func (n *Net) Remove(f Fault) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, err := n.proxy(f.proxy)
	if err != nil {
		return err
	}
	for _, t := range f.toxics {
		if err := p.Toxics.RemoveToxic(context.Background(), t); err != nil {
			return fmt.Errorf("netfault: remove %s from %s: %w", t, f.proxy, err)
		}
	}
	return nil
}

// Clear removes every toxic of name.
func (n *Net) Clear(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, err := n.proxy(name)
	if err != nil {
		return err
	}
	p.Toxics.ResetToxics(context.Background())
	return nil
}

// Down starts an outage of name: the listener closes and every open
// connection is closed. Outages nest: the proxy comes back after as many Ups.
func (n *Net) Down(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, err := n.proxy(name)
	if err != nil {
		return err
	}
	n.down[name]++
	n.counts[name+"/outage"]++
	if n.down[name] == 1 {
		p.Stop()
	}
	return nil
}

// Up ends an outage of name; when none is left it listens again on the same
// address.
func (n *Net) Up(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, err := n.proxy(name)
	if err != nil {
		return err
	}
	if n.down[name] == 0 {
		return nil
	}
	n.down[name]--
	if n.down[name] > 0 {
		return nil
	}
	// The port was ours a moment ago; another process may grab it in between,
	// so retry for a little while.
	var serr error
	for range 50 {
		if serr = p.Start(); serr == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.down[name] = 1
	return fmt.Errorf("netfault: restart proxy %s on %s: %w", name, p.Listen, serr)
}

// IsDown reports whether name is in an outage.
func (n *Net) IsDown(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down[name] > 0
}

// Heal ends every outage and removes every toxic.
func (n *Net) Heal() error {
	var names []string
	n.mu.Lock()
	for name := range n.proxies {
		names = append(names, name)
		if n.down[name] > 1 {
			n.down[name] = 1
		}
	}
	n.mu.Unlock()
	for _, name := range names {
		if err := n.Up(name); err != nil {
			return err
		}
		if err := n.Clear(name); err != nil {
			return err
		}
	}
	return nil
}

// Counts returns how often each fault was applied, keyed "<proxy>/<fault>"
// (latency, reset_peer, outage).
func (n *Net) Counts() map[string]int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := make(map[string]int64, len(n.counts))
	for k, v := range n.counts {
		c[k] = v
	}
	return c
}

// Close stops every proxy.
func (n *Net) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.proxies {
		p.Stop()
	}
}
