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
