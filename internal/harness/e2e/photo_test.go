package e2e_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/inspect"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
)

// TestPhotoTellsOnePhotosStory runs `migratectl photo` on the photos an
// on-call engineer gets asked about: one not started, one migrated, one
// dead-lettered because its original was gone, one whose row points at a
// copy someone deleted, and an id that does not exist.
func TestPhotoTellsOnePhotosStory(t *testing.T) {
	b := setup(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 8, Seed: 21, OwnerlessRate: 0.01}
	b.env.Seed(t, opts)
	var owned []seed.Photo
	for _, p := range seed.Generate(opts) {
		if p.OwnerID != nil {
			owned = append(owned, p)
		}
	}
	require.GreaterOrEqual(t, len(owned), 2)
	good, gone := owned[0], owned[1]
	del := func(key string) {
		_, err := b.env.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.env.Objects.Bucket()), Key: aws.String(key)})
		require.NoError(t, err)
	}

	out := b.run("migratectl", "photo", good.ID)
	require.Contains(t, out, "verdict: NOT STARTED")
	require.Contains(t, out, good.Original+"  (exists")

	del(gone.Original)
	b.run("producer")
	require.NoError(t, b.worker("--drain", "--wait-time", "1s").Wait())

	out = b.run("migratectl", "photo", good.ID)
	require.Contains(t, out, "verdict: MIGRATED")
	require.Contains(t, out, "ledger: migrated")
	require.Contains(t, out, "original: "+good.Original+" -> users/"+*good.OwnerID+"/raw/"+good.ID+"/original.")
	require.Contains(t, out, "legacy now: exists")
	require.Contains(t, out, "new now:    exists")
	require.NotContains(t, out, "MISSING")

	out = b.run("migratectl", "photo", gone.ID)
	require.Contains(t, out, "verdict: DEAD-LETTERED: reason source_missing")
	require.Contains(t, out, "the row references legacy keys S3 does not have: "+gone.Original)
	require.Contains(t, out, "dlq redrive --reason source_missing")
	require.Contains(t, out, gone.Original+"  (MISSING)")
	require.Contains(t, out, "failures recorded: 1")
	require.Contains(t, out, "source_missing (permanent")

	// The worst case: the row points at a key S3 does not have.
	var s inspect.Story
	require.NoError(t, json.Unmarshal([]byte(b.run("migratectl", "photo", good.ID, "--json")), &s))
	require.Equal(t, good.ID, s.PhotoID)
	require.NotNil(t, s.Row)
	del(s.Row.Original)
	out = b.run("migratectl", "photo", good.ID)
	require.Contains(t, out, "verdict: BROKEN: the photos row references 1 keys S3 does not have: "+s.Row.Original)
	require.Contains(t, out, "migratectl rollback --photo "+good.ID)

	out = b.run("migratectl", "photo", "00000000-0000-4000-8000-000000000000")
	require.Contains(t, out, `verdict: UNKNOWN: no photos row and no ledger row for "00000000-0000-4000-8000-000000000000"`)
	bad, err := b.cmd("migratectl", "photo", "no-such-photo").CombinedOutput()
	require.Error(t, err, "a malformed id is refused")
	require.Contains(t, string(bad), `photo id "no-such-photo" is not a uuid, the type of photos.id`)
}
