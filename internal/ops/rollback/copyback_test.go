package rollback_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// failHeadAfterCopy fails every HEAD of key once a copy to key went through:
// S3 failing the read that checks a copy back which has already landed.
type failHeadAfterCopy struct {
	key    string
	copied atomic.Bool
	next   http.RoundTripper
}

func (f *failHeadAfterCopy) RoundTrip(req *http.Request) (*http.Response, error) {
	onKey := strings.HasSuffix(req.URL.Path, "/"+f.key)
	if onKey && req.Method == http.MethodHead && f.copied.Load() {
		return nil, errors.New("injected: connection reset reading the copied-back object")
	}
	res, err := f.next.RoundTrip(req)
	if onKey && req.Method == http.MethodPut && req.Header.Get("x-amz-copy-source") != "" && err == nil && res.StatusCode == http.StatusOK {
		f.copied.Store(true)
	}
	return res, err
}

// migratedAndCleaned seeds one photo, migrates it and runs cleanup, which
// deletes its legacy objects: what a rollback then has to copy back.
func migratedAndCleaned(t *testing.T, seedValue uint64) (*testenv.Env, seed.Photo) {
	t.Helper()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 1, Seed: seedValue, OwnerlessRate: 0.0001}
	env.Seed(t, opts)
	env.Migrate(t)
	_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	p := seed.Generate(opts)[0]
	d, err := env.Store.ObjectMoveLegacyDeletions(ctx, []string{p.Original})
	require.NoError(t, err)
	require.True(t, d[p.Original].Gone(), "cleanup deleted the legacy original: %+v", d[p.Original])
	return env, p
}

// Found by the soak (seed 424242, cleanup_accounted): a rollback that copied a
// legacy object cleanup had deleted back from its new copy, and then failed
// (here the HEAD that checks the copy back; in the soak an injected S3
// fault), left the ledger saying the object was deleted while it was there
// again. Cleanup never looks at a deleted object again, so it stayed for good,
// and the ledger was wrong about it. The copy back is recorded as soon as it
// has landed.
func TestRollbackRecordsACopyBackThatLandedEvenIfItsCheckFails(t *testing.T) {
	t.Parallel()
	env, p := migratedAndCleaned(t, 29)
	ctx := context.Background()

	rt := &failHeadAfterCopy{key: p.Original, next: http.DefaultTransport}
	client := s3.New(env.S3.Options(), func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: rt}
		o.RetryMaxAttempts = 1
	})
	rep, err := rollback.Run(ctx, env.Store, objstore.New(client, env.Objects.Bucket(), objstore.Options{}), rollback.Options{PhotoID: p.ID, Force: true})
	require.True(t, err != nil || len(rep.Refused) == 1, "the rollback did not go through: %v %+v", err, rep)
	require.True(t, rt.copied.Load(), "the copy back landed")
	ok, err := env.Objects.Exists(ctx, p.Original)
	require.NoError(t, err)
	require.True(t, ok)
	d, err := env.Store.ObjectMoveLegacyDeletions(ctx, []string{p.Original})
	require.NoError(t, err)
	require.False(t, d[p.Original].Gone(), "the legacy original is there again, but the ledger says cleanup deleted it: %+v", d[p.Original])

	// Run again (as an operator would) it rolls back.
	rep, err = rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, Force: true})
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "%+v", rep.Refused)
}

// loseCopyResponse lets every copy to key reach the server and land, then
// loses its answer: S3 resetting the connection after executing the request.
type loseCopyResponse struct {
	key    string
	copied atomic.Int32
	next   http.RoundTripper
}

func (f *loseCopyResponse) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := f.next.RoundTrip(req)
	if strings.HasSuffix(req.URL.Path, "/"+f.key) && req.Method == http.MethodPut && req.Header.Get("x-amz-copy-source") != "" && err == nil && res.StatusCode == http.StatusOK {
		res.Body.Close()
		f.copied.Add(1)
		return nil, errors.New("injected: connection reset after the copy back landed")
	}
	return res, err
}

// Found by a two-minute soak (seed 952778, cleanup_accounted, "cleanup
// recorded its deletion …, but it is still there"): a rollback's copy back
// landed, its answer was lost, and the copy's retry (on a server that ignores
// conditional copies, the key is read again first) found the key there and
// refused as a precondition failure. The rollback then refused the photo
// without recording the copy back, so the ledger said cleanup had deleted an
// object that was there again. A copy back that fails is now followed by a
// read of the legacy key: holding the very object the copy was of, it has
// landed, is recorded, and the rollback goes on.
func TestRollbackRecordsACopyBackWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	env, p := migratedAndCleaned(t, 31)
	ctx := context.Background()

	rt := &loseCopyResponse{key: p.Original, next: http.DefaultTransport}
	client := s3.New(env.S3.Options(), func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: rt}
	})
	rep, err := rollback.Run(ctx, env.Store, objstore.New(client, env.Objects.Bucket(), objstore.Options{}), rollback.Options{PhotoID: p.ID, Force: true})
	require.Positive(t, rt.copied.Load(), "the copy back landed")
	ok, xerr := env.Objects.Exists(ctx, p.Original)
	require.NoError(t, xerr)
	require.True(t, ok)
	d, derr := env.Store.ObjectMoveLegacyDeletions(ctx, []string{p.Original})
	require.NoError(t, derr)
	require.False(t, d[p.Original].Gone(), "the legacy original is there again, but the ledger says cleanup deleted it: %+v", d[p.Original])
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "the copy back that landed is the legacy object: the rollback goes on (%+v)", rep.Refused)
	require.Equal(t, p.Original, env.Photo(t, p.ID).Original)
}
