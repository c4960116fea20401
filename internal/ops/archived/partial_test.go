package archived_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// failDelete answers 503 SlowDown to every DELETE of one key, as S3 does when
// it throttles, and passes everything else on.
type failDelete struct {
	key    string
	next   http.RoundTripper
	failed atomic.Int32
}

func (f *failDelete) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodDelete || !strings.HasSuffix(r.URL.Path, "/"+f.key) {
		return f.next.RoundTrip(r)
	}
	f.failed.Add(1)
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Slow Down",
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": []string{"application/xml"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
}

// Found by the soak (seed 880804 with -soak.archived-ops): a purge whose
// delete of one of a photo's legacy objects failed (S3 throttled it past the
// SDK's retries) returned before recording the deletions of that photo's
// objects it had already made. Only their intents were in the ledger, and a
// second purge, finding them gone (HEAD 404), took them for objects another
// photo's purge had deleted and never recorded them either: the ledger had
// no record of deletions purge made, and verify reported the archived row's
// references to them as keys missing for no known reason.
func TestAPurgeThatFailsMidPhotoRecordsWhatItDeleted(t *testing.T) {
	t.Parallel()
	env, j, _ := archivedLongAgo(t)
	ctx := context.Background()

	rt := &failDelete{key: j.orig, // deleted last: purge deletes in key order
		next: http.DefaultTransport}
	client := s3.New(env.S3.Options(), func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: rt}
		o.RetryMaxAttempts = 1
	})
	_, err := archived.Purge(ctx, env.Store, objstore.New(client, env.Objects.Bucket(), objstore.Options{}),
		archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.Error(t, err, "the original's delete failed")
	require.Positive(t, rt.failed.Load())
	require.True(t, present(t, env, j.orig))

	recorded := purgeDeletions(t, env)
	var gone int
	for _, k := range j.keys() {
		if !present(t, env, k) {
			gone++
			require.True(t, recorded[k], "purge deleted %s and recorded no deletion of it", k)
		}
	}
	require.Positive(t, gone, "the purge deleted something before the failing delete")

	// Run again (as an operator would, S3 answering): the photo is purged
	// and every deletion, the first run's included, is recorded.
	rep, err := archived.Purge(ctx, env.Store, env.Objects, archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.NoError(t, err)
	require.Len(t, rep.Photos, 1)
	require.True(t, rep.Photos[0].Complete, "%+v", rep)
	recorded = purgeDeletions(t, env)
	for _, k := range j.keys() {
		require.False(t, present(t, env, k), "%s purged", k)
		require.True(t, recorded[k], "%s: deleted, and no deletion recorded", k)
	}
	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.Zero(t, r.ProblemsByKind[verify.ReferencedKeyMissing], "%+v", r.Problems)
}

// A purge killed between a delete and its record leaves the intent alone in
// the ledger. The next run finds the object gone and records the deletion
// the intent announced, rather than taking it for another photo's.
func TestAPurgeRecordsTheDeletionAKilledRunLeftAsAnIntent(t *testing.T) {
	t.Parallel()
	env, j, id := archivedLongAgo(t)
	ctx := context.Background()

	// The killed run: the intent of the thumbnail's delete, then the delete.
	info, err := env.Objects.Head(ctx, j.thumb)
	require.NoError(t, err)
	require.NoError(t, env.Store.PurgeBegin(ctx, id, map[string]string{j.thumb: info.ETag}, map[string]int64{j.thumb: info.Size}))
	require.NoError(t, env.Objects.DeleteIf(ctx, j.thumb, info.ETag))

	rep, err := archived.Purge(ctx, env.Store, env.Objects, archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.NoError(t, err)
	require.Len(t, rep.Photos, 1)
	require.True(t, rep.Photos[0].Complete, "%+v", rep)
	recorded := purgeDeletions(t, env)
	for _, k := range j.keys() {
		require.False(t, present(t, env, k), "%s purged", k)
		require.True(t, recorded[k], "%s: deleted, and no deletion recorded", k)
	}
}

// purgeDeletions is the set of legacy keys whose deletion by a purge the
// ledger records.
func purgeDeletions(t *testing.T, env *testenv.Env) map[string]bool {
	t.Helper()
	recorded := map[string]bool{}
	for _, p := range ledgertest.Purges(t, env.Store) {
		if p.DeletedAt != nil {
			recorded[p.OldKey] = true
		}
	}
	return recorded
}

// archivedLongAgo migrates one ownerless photo with every legacy object
// (so it is archived) and backdates its archive past the purges' retention.
func archivedLongAgo(t *testing.T) (*testenv.Env, legacyJob, string) {
	t.Helper()
	env := testenv.New(t, testenv.Options{})
	j := putJob(t, env)
	id := insert(t, env, j, nil)
	env.Migrate(t)
	ledgertest.BackdateArchived(t, env.Store, []string{id}, 100*24*time.Hour)
	return env, j, id
}

// cancelAfterFirstDelete lets the first DELETE through; on the next one it
// notes whether the ledger already records the first deletion (the moment a
// SIGKILL could land), then cancels the purge's context and fails the
// request, as an operator's time limit interrupts a purge mid-photo.
type cancelAfterFirstDelete struct {
	next     http.RoundTripper
	cancel   context.CancelFunc
	seen     func() bool // is the first deleted key recorded?
	deletes  atomic.Int32
	first    atomic.Value // string: the first key deleted
	recorded atomic.Bool
}

func (c *cancelAfterFirstDelete) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodDelete {
		return c.next.RoundTrip(r)
	}
	if c.deletes.Add(1) == 1 {
		c.first.Store(r.URL.Path)
		return c.next.RoundTrip(r)
	}
	c.recorded.Store(c.seen())
	c.cancel()
	return nil, context.Canceled
}

// Found by the 30-minute soak (seed 249867): `archived purge` killed by the
// operator's time limit mid-run. A purge recorded a photo's deletions only
// once it had deleted all its objects, so one interrupted mid-photo (its
// context cancelled, or the process killed) left the deletions it had made
// as bare intents, until someone ran it again. Each deletion is recorded as
// it lands now, and a cancelled purge records what it found before it
// returns.
func TestAPurgeInterruptedMidPhotoHasRecordedEachDeletion(t *testing.T) {
	t.Parallel()
	env, j, _ := archivedLongAgo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	rt := &cancelAfterFirstDelete{next: http.DefaultTransport, cancel: cancel}
	rt.seen = func() bool {
		p, _ := rt.first.Load().(string)
		for k := range purgeDeletions(t, env) {
			if strings.HasSuffix(p, "/"+k) {
				return true
			}
		}
		return false
	}
	client := s3.New(env.S3.Options(), func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: rt}
		o.RetryMaxAttempts = 1
	})
	_, err := archived.Purge(ctx, env.Store, objstore.New(client, env.Objects.Bucket(), objstore.Options{}),
		archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.Error(t, err, "interrupted")
	require.GreaterOrEqual(t, rt.deletes.Load(), int32(2), "the purge reached its second delete")
	require.True(t, rt.recorded.Load(), "when the second delete began, the first (%v) was not recorded: a SIGKILL there leaves it an intent", rt.first.Load())

	// Without a rerun: every object gone has its deletion recorded.
	recorded := purgeDeletions(t, env)
	gone := 0
	for _, k := range j.keys() {
		if !present(t, env, k) {
			gone++
			require.True(t, recorded[k], "the interrupted purge deleted %s and recorded no deletion of it", k)
		}
	}
	require.Equal(t, 1, gone, "one delete landed")
}

// cancelOnFirstDelete lets the first DELETE reach S3 and cancels the purge's
// context as its answer comes back: the delete landed, the purge is
// interrupted before it could record it on its own context.
type cancelOnFirstDelete struct {
	next   http.RoundTripper
	cancel context.CancelFunc
	done   atomic.Bool
}

func (c *cancelOnFirstDelete) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodDelete || c.done.Swap(true) {
		return c.next.RoundTrip(r)
	}
	resp, err := c.next.RoundTrip(r)
	c.cancel()
	return resp, err
}

// The same soak finding, the interruption landing right as a delete does: the
// purge records that deletion (on a context of its own) before it returns.
func TestAPurgeCancelledAsADeleteLandsRecordsIt(t *testing.T) {
	t.Parallel()
	env, j, _ := archivedLongAgo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	client := s3.New(env.S3.Options(), func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: &cancelOnFirstDelete{next: http.DefaultTransport, cancel: cancel}}
		o.RetryMaxAttempts = 1
	})
	_, err := archived.Purge(ctx, env.Store, objstore.New(client, env.Objects.Bucket(), objstore.Options{}),
		archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.Error(t, err, "interrupted")

	recorded := purgeDeletions(t, env)
	gone := 0
	for _, k := range j.keys() {
		if !present(t, env, k) {
			gone++
			require.True(t, recorded[k], "the cancelled purge deleted %s and recorded no deletion of it", k)
		}
	}
	require.Equal(t, 1, gone, "the first delete landed")
}
