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

// Found by the soak (seed 424242, cleanup_accounted): a rollback that copied a
// legacy object cleanup had deleted back from its new copy, and then failed
// (here the HEAD that checks the copy back; in the soak an injected S3
// fault), left the ledger saying the object was deleted while it was there
// again. Cleanup never looks at a deleted object again, so it stayed for good,
// and the ledger was wrong about it. The copy back is recorded as soon as it
// has landed.
func TestRollbackRecordsACopyBackThatLandedEvenIfItsCheckFails(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 1, Seed: 29, OwnerlessRate: 0.0001}
	env.Seed(t, opts)
	env.Migrate(t)
	_, err := cleanup.Run(ctx, env.Store, env.Objects, cleanup.Options{Grace: 0})
	require.NoError(t, err)
	p := seed.Generate(opts)[0]
	d, err := env.Store.ObjectMoveLegacyDeletions(ctx, []string{p.Original})
	require.NoError(t, err)
	require.True(t, d[p.Original].Gone(), "cleanup deleted the legacy original: %+v", d[p.Original])

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
	d, err = env.Store.ObjectMoveLegacyDeletions(ctx, []string{p.Original})
	require.NoError(t, err)
	require.False(t, d[p.Original].Gone(), "the legacy original is there again, but the ledger says cleanup deleted it: %+v", d[p.Original])

	// Run again (as an operator would) it rolls back.
	rep, err = rollback.Run(ctx, env.Store, env.Objects, rollback.Options{PhotoID: p.ID, Force: true})
	require.NoError(t, err)
	require.Equal(t, 1, rep.RolledBack, "%+v", rep.Refused)
}
