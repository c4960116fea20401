package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test here skips; nothing to build
	}
	dir, err := os.MkdirTemp("", "keymigrate-e2e-")
	if err != nil {
		panic(err)
	}
	out, err := exec.Command("go", "build", "-o", dir, "../../../cmd/...").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type testBundle struct {
	t   *testing.T
	env *testenv.Env
}

func setup(t *testing.T, o testenv.Options) *testBundle {
	t.Helper()
	t.Parallel()
	return &testBundle{t: t, env: testenv.New(t, o)}
}

// cmd prepares one of the binaries with the stack's environment.
func (b *testBundle) cmd(name string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(binDir, name), args...)
	c.Env = b.env.Environ()
	return c
}

// run runs a binary to completion and returns its stdout.
func (b *testBundle) run(name string, args ...string) string {
	b.t.Helper()
	c := b.cmd(name, args...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	require.NoError(b.t, err, "%s %v\nstdout:\n%s\nstderr:\n%s", name, args, stdout.String(), tail(stderr.String()))
	return stdout.String()
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// worker starts a worker process; its stderr goes to a file kept for failures.
func (b *testBundle) worker(args ...string) *exec.Cmd {
	b.t.Helper()
	c := b.cmd("worker", args...)
	f, err := os.CreateTemp(b.t.TempDir(), "worker-*.log")
	require.NoError(b.t, err)
	c.Stderr = f
	require.NoError(b.t, c.Start())
	b.t.Cleanup(func() {
		if c.ProcessState == nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		if b.t.Failed() {
			body, _ := os.ReadFile(f.Name())
			b.t.Logf("worker log %s:\n%s", f.Name(), tail(string(body)))
		}
	})
	return c
}

func (b *testBundle) count(query string, args ...any) int {
	b.t.Helper()
	var n int
	require.NoError(b.t, b.env.Store.Pool().QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

// snapshot lists every object outside users/ with its ETag.
func (b *testBundle) legacyObjects() map[string]string {
	b.t.Helper()
	objs := map[string]string{}
	require.NoError(b.t, b.env.Objects.ListEach(context.Background(), "", func(k string, _ int64, etag string) error {
		if !strings.HasPrefix(k, "users/") {
			objs[k] = etag
		}
		return nil
	}))
	return objs
}

// requireEndState checks what a finished migration must look like.
func (b *testBundle) requireEndState(photos []seed.Photo, legacyBefore map[string]string) {
	t := b.t
	t.Helper()
	ctx := context.Background()
	moved := 0
	for _, sp := range photos {
		p := b.env.Photo(t, sp.ID)
		if sp.OwnerID == nil {
			require.Equal(t, "archived", *p.Status, "ownerless photo %s is archived", sp.ID)
			require.Equal(t, sp.Original, p.Original, "ownerless photo %s keeps its keys", sp.ID)
			require.Equal(t, sp.Processed, p.Processed)
			require.Equal(t, sp.Thumbnail, p.Thumbnail)
			continue
		}
		owner := *sp.OwnerID
		for _, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
			if k != nil {
				require.NoError(t, keylayout.CheckUserKey(*k, owner), "photo %s", sp.ID)
			}
		}
		for _, o := range sp.Objects {
			l, err := keylayout.ParseLegacy(o.Key)
			require.NoError(t, err)
			newKey, err := l.UserScoped(owner, sp.ID)
			require.NoError(t, err)
			src, err := b.env.Objects.Head(ctx, o.Key)
			require.NoError(t, err, "legacy %s still exists", o.Key)
			dst, err := b.env.Objects.Head(ctx, newKey)
			require.NoError(t, err, "%s was copied to %s", o.Key, newKey)
			require.Equal(t, src.Size, dst.Size)
			require.Equal(t, src.ContentType, dst.ContentType)
			require.Equal(t, src.Metadata, dst.Metadata)
			same, err := b.env.Objects.SameBytes(ctx, src, dst)
			require.NoError(t, err)
			require.True(t, same, "%s and %s hold the same bytes", o.Key, newKey)
			moved++
		}
	}
	// Every legacy object, orphans and archived photos' included, is exactly as
	// it was; no other photo object appeared under users/. (The fleet's one
	// S3 probe writes under objstore.ProbePrefix, which no user id can name;
	// a worker killed mid-probe may leave its objects there for the next
	// probe to remove.)
	require.Equal(t, legacyBefore, b.legacyObjects())
	var users int
	require.NoError(t, b.env.Objects.ListEach(ctx, "users/", func(k string, _ int64, _ string) error {
		if !strings.HasPrefix(k, objstore.ProbePrefix) {
			users++
		}
		return nil
	}))
	require.Equal(t, moved, users)
}

func TestDemoMigrationWithTwoWorkerProcesses(t *testing.T) {
	b := setup(t, testenv.Options{})
	opts := seed.Options{Photos: 150, Seed: 11, OrphanRate: 0.1}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	legacyBefore := b.legacyObjects()

	out := b.run("producer")
	require.Contains(t, out, "enqueued 150")
	w1 := b.worker("--drain", "--concurrency", "6", "--wait-time", "1s")
	w2 := b.worker("--drain", "--concurrency", "6", "--wait-time", "1s")
	require.NoError(t, w1.Wait())
	require.NoError(t, w2.Wait())

	b.requireEndState(photos, legacyBefore)
	require.Contains(t, b.run("migratectl", "verify", "--deep"), "verify: OK")
	require.Zero(t, len(ledgertest.Failures(t, b.env.Store)))

	// Running it again changes nothing and enqueues nothing.
	out = b.run("producer")
	require.Contains(t, out, "found 0 legacy photos; enqueued 0")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	b.requireEndState(photos, legacyBefore)
	status := b.run("migratectl", "status")
	require.Contains(t, status, "0 rows still reference legacy keys")
}

// halfSwapped counts rows mixing legacy and user-scoped keys: the seed writes
// every row fully legacy, so a mixed row could only come from a torn swap.
const halfSwapped = `
SELECT count(*) FROM photos
 WHERE (original_key LIKE 'users/%' OR processed_key LIKE 'users/%' OR thumbnail_key LIKE 'users/%')
   AND (original_key NOT LIKE 'users/%' OR processed_key NOT LIKE 'users/%' OR thumbnail_key NOT LIKE 'users/%')`

func TestSIGTERMMidBatchLosesNothing(t *testing.T) {
	b := setup(t, testenv.Options{})
	opts := seed.Options{Photos: 300, Seed: 12}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	legacyBefore := b.legacyObjects()
	b.run("producer")

	w := b.worker("--concurrency", "8", "--wait-time", "2s", "--shutdown-grace", "20s")
	require.Eventually(t, func() bool {
		return ledgertest.PhotoMovesIn(t, b.env.Store, "migrated", "archived") >= 30
	}, time.Minute, 50*time.Millisecond)
	require.NoError(t, w.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- w.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status 0 after SIGTERM")
	case <-time.After(45 * time.Second):
		t.Fatal("the worker did not stop within its grace period")
	}

	ctx := context.Background()
	require.Zero(t, b.count(halfSwapped))
	done := ledgertest.PhotoMovesIn(t, b.env.Store, "migrated", "archived")
	require.Less(t, done, 300, "stopped mid-run")
	// Every photo not done still has its message, visible now (released or
	// never received), not hidden for a visibility timeout.
	d, err := b.env.Queue.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 300-done, d.Visible, "queue %+v, %d photos done", d, done)
	require.Zero(t, d.InFlight)

	require.NoError(t, b.worker("--drain", "--concurrency", "8", "--wait-time", "1s").Wait())
	b.requireEndState(photos, legacyBefore)
	require.Contains(t, b.run("migratectl", "verify"), "verify: OK")
}

func TestSIGKILLAtAnyPointConverges(t *testing.T) {
	b := setup(t, testenv.Options{})
	opts := seed.Options{Photos: 250, Seed: 13, Large: 3, LargeSize: 12 << 20}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	legacyBefore := b.legacyObjects()
	b.run("producer")

	// Short visibility, so that what a killed worker held comes back quickly;
	// a low multipart threshold, so that kills also land inside part copies.
	args := []string{"--concurrency", "6", "--wait-time", "1s", "--visibility-timeout", "3s",
		"--multipart-threshold", "5MiB", "--part-size", "5MiB"}
	keeper := b.worker(append(args, "--drain")...)
	for i := range 6 {
		victim := b.worker(args...)
		time.Sleep(time.Duration(300+i*170) * time.Millisecond)
		require.NoError(t, victim.Process.Signal(syscall.SIGKILL))
		_ = victim.Wait()
	}
	require.NoError(t, keeper.Wait())

	require.Zero(t, b.count(halfSwapped))
	b.requireEndState(photos, legacyBefore)
	require.Contains(t, b.run("migratectl", "verify", "--deep"), "verify: OK")
	require.Zero(t, ledgertest.Count(ledgertest.Failures(t, b.env.Store), func(f ledgertest.Failure) bool { return f.Permanent }))
	d, err := b.env.DLQ.Depth(context.Background())
	require.NoError(t, err)
	require.Zero(t, d.Total())
}

// runExit runs a binary and returns its stdout and exit code.
func (b *testBundle) runExit(name string, args ...string) (string, int) {
	b.t.Helper()
	c := b.cmd(name, args...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), ee.ExitCode()
	}
	require.NoError(b.t, err, "stderr: %s", stderr.String())
	return stdout.String(), 0
}

func TestOperatorVerifyRequeueCleanup(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 80, Seed: 14, OrphanRate: 0.2, OwnerlessRate: 0.1}
	res := b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	b.run("producer")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	out, code := b.runExit("migratectl", "verify")
	require.Equal(t, 0, code, out)

	// One new object deleted by hand: verify fails and names it.
	var victim seed.Photo
	for _, p := range photos {
		if p.OwnerID != nil {
			victim = p
			break
		}
	}
	l, err := keylayout.ParseLegacy(victim.Original)
	require.NoError(t, err)
	gone, err := l.UserScoped(*victim.OwnerID, victim.ID)
	require.NoError(t, err)
	require.NoError(t, b.env.Objects.Delete(ctx, gone))
	out, code = b.runExit("migratectl", "verify")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, gone)

	// verify --requeue does not copy it again: a missing copy may be the
	// application's deletion, which is final. --repair, the operator's
	// explicit request, does.
	out, code = b.runExit("migratectl", "verify", "--requeue")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "1 photos have copies missing; not repaired")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	_, err = b.env.Objects.Head(ctx, gone)
	require.ErrorIs(t, err, objstore.ErrNotFound)
	out, code = b.runExit("migratectl", "verify", "--requeue", "--repair")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "asked for the repair of 1 photos")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	out, code = b.runExit("migratectl", "verify", "--deep")
	require.Equal(t, 0, code, out)

	// cleanup --grace 0 removes exactly the moved legacy objects.
	dry, code := b.runExit("migratectl", "cleanup", "--grace", "0", "--dry-run")
	require.Equal(t, 0, code, dry)
	out, code = b.runExit("migratectl", "cleanup", "--grace", "0")
	require.Equal(t, 0, code, out)
	want := map[string]string{}
	for _, p := range photos {
		if p.OwnerID == nil {
			for _, o := range p.Objects {
				want[o.Key] = ""
			}
		}
		if p.OrphanObject != nil {
			want[p.OrphanObject.Key] = ""
		}
	}
	left := b.legacyObjects()
	for k := range left {
		left[k] = ""
	}
	require.Equal(t, want, left, "only orphans and archived photos' objects remain")
	require.Contains(t, dry, fmt.Sprintf("would delete %d legacy objects", res.Objects-len(want)))

	out, code = b.runExit("migratectl", "verify")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, fmt.Sprintf("%d legacy objects no row references", res.Orphans))
	require.Contains(t, b.run("migratectl", "status"), fmt.Sprintf("cleaned      %d", 80-res.Ownerless))
}

func TestRedriveKilledMidwayLosesNothing(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	var ids []string
	for range 60 {
		id, owner := uuid.NewString(), uuid.NewString()
		b.env.InsertPhoto(t, id, &owner, "uploaded/"+uuid.NewString()+".jpg", nil, nil)
		ids = append(ids, id)
	}
	b.run("producer")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	d, err := b.env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 60, d.Total())

	// Kill the redrive mid-run, twice, then let it finish.
	for _, after := range []time.Duration{120 * time.Millisecond, 250 * time.Millisecond} {
		c := b.cmd("migratectl", "dlq", "redrive", "--reason", "source_missing", "--hold", "2s")
		require.NoError(t, c.Start())
		time.Sleep(after)
		require.NoError(t, c.Process.Signal(syscall.SIGKILL))
		_ = c.Wait()
	}
	time.Sleep(2500 * time.Millisecond) // what the killed runs held reappears
	out := b.run("migratectl", "dlq", "redrive", "--reason", "source_missing", "--hold", "2s")
	require.Contains(t, out, "moved")

	d, err = b.env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, d.Total(), "the DLQ is empty")
	seen := map[string]int{}
	for {
		msgs, err := b.env.Queue.Receive(ctx, 10, 0, time.Minute)
		require.NoError(t, err)
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			dm, err := queue.Decode(m.Body)
			require.NoError(t, err)
			seen[dm.PhotoID]++
		}
	}
	for _, id := range ids {
		require.GreaterOrEqual(t, seen[id], 1, "photo %s lost", id)
	}
	require.Len(t, seen, 60)
}

// `migratectl dlq redrive` without a filter, as an operator on AWS runs it:
// one StartMessageMoveTask for the whole DLQ, waited for.
func TestDLQRedriveThroughAMessageMoveTask(t *testing.T) {
	testenv.SkipOnSQS(t, testenv.SQSFauxqs, "fauxqs 2.4.1 has no StartMessageMoveTask (run it with KEYMIGRATE_SQS=local-aws-sqs)")
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	ids := map[string]bool{}
	for range 20 {
		id, owner := uuid.NewString(), uuid.NewString()
		b.env.InsertPhoto(t, id, &owner, "uploaded/"+uuid.NewString()+".jpg", nil, nil)
		ids[id] = true
	}
	b.run("producer")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())
	d, err := b.env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 20, d.Total())

	out := b.run("migratectl", "dlq", "redrive")
	require.Contains(t, out, "moved 20 messages back to the main queue (move-task)")
	d, err = b.env.DLQ.Depth(ctx)
	require.NoError(t, err)
	require.Zero(t, d.Total(), "the DLQ is empty")
	seen := map[string]bool{}
	for {
		msgs, err := b.env.Queue.Receive(ctx, 10, 0, time.Minute)
		require.NoError(t, err)
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			dm, err := queue.Decode(m.Body)
			require.NoError(t, err)
			seen[dm.PhotoID] = true
		}
	}
	require.Equal(t, ids, seen, "every dead-lettered photo is back in the main queue")
	require.Contains(t, b.run("migratectl", "dlq", "list"), "no dead-lettered photos recorded", "redriven messages leave the listing")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestWorkerMetricsAndReadiness(t *testing.T) {
	b := setup(t, testenv.Options{})
	b.env.Seed(t, seed.Options{Photos: 30, Seed: 15})
	b.run("producer")
	addr := freeAddr(t)
	w := b.worker("--listen", addr, "--wait-time", "10s")
	base := "http://" + addr

	var metrics string
	require.Eventually(t, func() bool {
		code, body, err := httpGet(base + "/metrics")
		metrics = body
		return err == nil && code == 200 && ledgertest.PhotoMovesIn(t, b.env.Store, "migrated", "archived") == 30 &&
			strings.Contains(body, `keymigrate_photos_processed_total{outcome="migrated",reason=""}`)
	}, time.Minute, 100*time.Millisecond)
	require.Regexp(t, `keymigrate_photos_processed_total\{outcome="migrated",reason=""\} [1-9]`, metrics)
	require.Regexp(t, `keymigrate_bytes_copied_total [1-9]`, metrics)
	require.Regexp(t, `keymigrate_objects_copied_total [1-9]`, metrics)
	code, body, err := httpGet(base + "/readyz")
	require.NoError(t, err)
	require.Equal(t, 200, code, body)

	// SIGTERM while a 10s long poll is out: the worker lets it finish, and
	// meanwhile says it is not ready.
	require.NoError(t, w.Process.Signal(syscall.SIGTERM))
	require.Eventually(t, func() bool {
		code, body, err := httpGet(base + "/readyz")
		return err == nil && code == 503 && strings.Contains(body, "draining")
	}, 5*time.Second, 50*time.Millisecond)
	require.NoError(t, w.Wait())
}
