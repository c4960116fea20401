package soak

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A producer run is counted when it ends, by how it ended: one that exits with
// an error (it could not reach Postgres during an outage) is a failed run, not
// an "ok" one as it was when counted at its start; one the harness kills is
// not counted as a run at all.
func TestAProducerRunIsCountedByItsExit(t *testing.T) {
	t.Parallel()
	// Every script is written before the first is run, each in its own
	// directory: a process forked meanwhile by a parallel test could otherwise
	// still hold a script open for writing when it is run ("text file busy").
	producers := map[string]string{}
	for name, body := range map[string]string{
		"fails":  "echo 'connect: connection refused' >&2; exit 1",
		"ends":   "exit 0",
		"sleeps": "sleep 30",
	} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "producer"), []byte("#!/bin/sh\n"+body+"\n"), 0o755))
		producers[name] = dir
	}
	r := &Runner{procs: &Procs{Dir: t.TempDir()}, operator: map[string]*Count{}}
	use := func(name string) { r.procs.BinDir = producers[name] }
	counted := func() Count {
		r.mu.Lock()
		defer r.mu.Unlock()
		if c := r.operator["producer_run"]; c != nil {
			return *c
		}
		return Count{}
	}
	run := func() *proc {
		p := r.launchProducer()
		require.NotNil(t, p)
		return p
	}
	wait := func(want Count) {
		t.Helper()
		require.Eventually(t, func() bool { c := counted(); return c.OK == want.OK && c.Failed == want.Failed },
			10*time.Second, 10*time.Millisecond, "counted %+v, want ok %d failed %d", counted(), want.OK, want.Failed)
	}

	use("fails")
	run()
	wait(Count{Failed: 1})
	require.Contains(t, counted().Last, "exit status 1")

	use("ends")
	run()
	wait(Count{OK: 1, Failed: 1})

	use("sleeps")
	p := run()
	require.Nil(t, r.launchProducer(), "a second producer is not started beside a running one")
	p.signal(9)
	<-p.done
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, Count{OK: 1, Failed: 1, Last: counted().Last}, counted(), "a killed producer is not a run")
}
