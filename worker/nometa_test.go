package worker_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// TestAPhotoWithoutMetadataIsMigratedWithoutIt migrates a photo that has no
// meta/{job_id}.json. On the copy-first path its metadata is copied without
// a read first and the copy answers NoSuchKey: the move is dropped, and the
// intent recorded before that copy is retired (discarded, never committed),
// so that no open move is left for a swap, verify, cleanup or rollback to
// take for a real object. verify then finds nothing wrong, and cleanup
// deletes exactly the four moved legacy objects.
func TestAPhotoWithoutMetadataIsMigratedWithoutIt(t *testing.T) {
	for _, enforced := range []bool{true, false} {
		name := "destination read first"
		if enforced {
			name = "conditional copies enforced"
		}
		t.Run(name, func(t *testing.T) {
			b := setup(t, testenv.Options{})
			ctx := context.Background()
			objects := b.env.Objects
			if enforced {
				srv, _ := enforcingProxy(t, b)
				client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
					o.BaseEndpoint = aws.String(srv.URL)
					o.UsePathStyle = true
				})
				objects = objstore.New(client, b.env.Objects.Bucket(), objstore.Options{})
			}
			b.drain(worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, cfg())) // the probe

			f := b.legacyPhotoWith(false, true)
			b.send(f.ID, "run-1")
			w := worker.New(b.env.Store, objects, b.env.Queue, b.env.DLQ, b.log, cfg())
			b.drain(w)
			b.requireMigrated(f)
			b.queueEmpty()
			require.Empty(t, b.dlqMessages())
			require.EqualValues(t, 1, w.Stats().Migrated)
			require.EqualValues(t, 4, w.Stats().ObjectsCopied)

			metaNew := keylayout.MetadataKey(f.Owner, f.ID)
			ok, err := b.env.Objects.Exists(ctx, metaNew)
			require.NoError(t, err)
			require.False(t, ok, "no metadata copy")
			open, err := b.env.Store.ObjectMoveListOpen(ctx, f.ID)
			require.NoError(t, err)
			require.Empty(t, open, "the metadata's intent is retired, not left open")
			committed, err := b.env.Store.ObjectMoveListOfPhoto(ctx, f.ID)
			require.NoError(t, err)
			require.Len(t, committed, 4)
			for _, o := range committed {
				require.NotEqual(t, metaNew, o.NewKey, "no metadata move committed")
			}

			r, err := verify.Run(ctx, b.env.Store, b.env.Objects, verify.Options{Deep: true})
			require.NoError(t, err)
			require.True(t, r.OK(), "%+v", r.Problems)
			require.Zero(t, r.RequeueCount, "nothing left unmoved")

			rep, err := cleanup.Run(ctx, b.env.Store, b.env.Objects, cleanup.Options{Grace: 0})
			require.NoError(t, err)
			require.EqualValues(t, 4, rep.Deleted, "exactly the moved legacy objects: %+v", rep)
			for _, k := range f.legacyKeys() {
				ok, err := b.env.Objects.Exists(ctx, k)
				require.NoError(t, err)
				require.False(t, ok, "legacy %s cleaned up", k)
			}
			r, err = verify.Run(ctx, b.env.Store, b.env.Objects, verify.Options{Deep: true})
			require.NoError(t, err)
			require.True(t, r.OK(), "after cleanup: %+v", r.Problems)
		})
	}
}
