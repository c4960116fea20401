package synths3

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/pipeline/s3caps"
)

// The stand-in is worth measuring with only if keymigrate's own operations,
// unchanged, see in it exactly the bucket and the ledger the keyspace
// describes.

func openLedger(t testing.TB, url string) *ledger.Store {
	t.Helper()
	st, err := ledger.Open(context.Background(), url, 8)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st
}

func TestPlanCountsExactlyTheKeyspace(t *testing.T) {
	t.Parallel()
	for _, idType := range []IDType{IDBigint, IDUUID} {
		t.Run(string(idType), func(t *testing.T) {
			t.Parallel()
			l := load(t, Config{Photos: 500, IDType: idType}, LegacyState, LoadOptions{})
			ctx := context.Background()
			// As migratectl plan builds it: no capabilities resolved.
			objects := objstore.New(l.client, l.bucket, objstore.Options{})
			rep, err := plan.Run(ctx, openLedger(t, l.url), objects, plan.Options{Calibrate: 5, ListConcurrency: 8})
			require.NoError(t, err)
			tot := l.ks.Totals()

			require.Equal(t, tot.Objects, rep.Listing.Objects)
			require.Equal(t, tot.Bytes, rep.Listing.Bytes)
			for _, p := range keylayout.LegacyPrefixes {
				require.Equal(t, plan.Totals{Objects: tot.ByPrefix[p].Objects, Bytes: tot.ByPrefix[p].Bytes}, rep.Listing.Prefixes[p], p)
			}
			for class, v := range tot.ByClass {
				require.Equal(t, plan.Totals{Objects: v.Objects, Bytes: v.Bytes}, rep.Listing.ByStorageClass[class], class)
			}
			require.Len(t, rep.Listing.ByStorageClass, 2, "STANDARD and STANDARD_IA")

			require.Equal(t, plan.Photos{LegacyRows: 500, ToMigrate: 500 - tot.Ownerless, Ownerless: tot.Ownerless}, rep.Photos)
			require.Equal(t, tot.Moves, rep.Copies.Objects)
			require.Equal(t, tot.MoveBytes, rep.Copies.Bytes)
			require.Len(t, rep.Copies.ByKind, len(tot.MovesByKind))
			for kind, v := range tot.MovesByKind {
				got := rep.Copies.ByKind[string(kind)]
				require.Equal(t, v.Objects, got.Objects, kind)
				require.Equal(t, v.Bytes, got.Bytes, kind)
			}
			orphans := rep.Problem("orphans")
			require.Equal(t, tot.Orphans, orphans.Count)
			require.Equal(t, tot.OrphanBytes, orphans.Bytes)
			require.Positive(t, orphans.Count)
			for _, name := range []string{"rows_pointing_at_missing_objects", "unrecognised_legacy_objects", "rows_with_unrecognised_keys",
				"invalid_owner_or_photo_ids", "legacy_objects_shared_by_rows", "derived_objects_shared_by_rows", "objects_in_archive_storage_classes"} {
				require.Zero(t, rep.Problem(name).Count, name)
			}
			require.Equal(t, tot.Ownerless, rep.Problem("ownerless_photos").Count)

			// The calibration copied five photos' objects to its scratch
			// prefix and deleted them.
			cal := rep.Estimate.Calibration
			require.Equal(t, plan.CalibratedByScratchCopy, cal.Source)
			require.EqualValues(t, 5, cal.Photos)
			require.Positive(t, cal.Deleted)
			out, err := l.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &l.bucket, Prefix: aws.String("keymigrate-plan-scratch/")})
			require.NoError(t, err)
			require.Empty(t, out.Contents)
			require.Empty(t, l.srv.Stats().NotImplemented)
		})
	}
}

func TestVerifyPassesOnTheFinishedStateAndFailsWhenAnObjectGoes(t *testing.T) {
	t.Parallel()
	l := load(t, Config{Photos: 500}, FinishedState, LoadOptions{})
	ctx := context.Background()
	st := openLedger(t, l.url)
	objects := objstore.New(l.client, l.bucket, objstore.Options{})
	tot := l.ks.Totals()

	rep, err := verify.Run(ctx, st, objects, verify.Options{Deep: true})
	require.NoError(t, err)
	require.True(t, rep.OK(), "problems: %+v", rep.Problems)
	require.EqualValues(t, 500, rep.RowsChecked)
	require.Equal(t, tot.Ownerless, rep.ArchivedRows)
	require.Equal(t, tot.Moves, rep.ObjectsChecked)
	require.Equal(t, tot.Moves, rep.LegacyPresent)
	require.Equal(t, tot.Moves, rep.DeepCompared)
	require.Equal(t, tot.Orphans, rep.OrphanCount)
	require.Zero(t, rep.Missing+rep.Rewritten+rep.Superseded)
	require.Empty(t, l.srv.Stats().NotImplemented)

	// The endpoint loses a copy a row points at, and a legacy object of
	// another migrated photo: verify must fail, naming both.
	var copyKey, legacyKey string
	for i := range l.ks.Photos() {
		p := l.ks.Photo(i)
		if p.OwnerID == "" {
			continue
		}
		if copyKey == "" {
			copyKey = p.Objects[0].UserKey
		} else {
			legacyKey = p.Objects[0].LegacyKey
			break
		}
	}
	require.True(t, l.srv.Remove(copyKey))
	require.True(t, l.srv.Remove(legacyKey))
	rep, err = verify.Run(ctx, st, objects, verify.Options{})
	require.NoError(t, err)
	require.False(t, rep.OK())
	require.Equal(t, map[string]int64{verify.ReferencedKeyMissing: 1, verify.LegacyObjectMissing: 1}, rep.ProblemsByKind)
	var keys []string
	for _, p := range rep.Problems {
		keys = append(keys, p.Key)
	}
	require.ElementsMatch(t, []string{copyKey, legacyKey}, keys)
}

func TestCleanupDeletesEveryMovedLegacyObjectAndVerifyStillPasses(t *testing.T) {
	t.Parallel()
	l := load(t, Config{Photos: 300}, FinishedState, LoadOptions{})
	ctx := context.Background()
	st := openLedger(t, l.url)
	objects := objstore.New(l.client, l.bucket, objstore.Options{})
	// As migratectl cleanup does: the capabilities the loader recorded for
	// the fleet are used, no probe is made.
	caps, err := s3caps.Resolve(ctx, st, objects, false)
	require.NoError(t, err)
	require.Equal(t, Capabilities(), caps)
	require.Zero(t, l.srv.Stats().Requests["PutObject"], "no probe: the recorded capabilities were found")
	tot := l.ks.Totals()

	rep, err := cleanup.Run(ctx, st, objects, cleanup.Options{Grace: 7 * 24 * time.Hour})
	require.NoError(t, err)
	require.EqualValues(t, tot.Moves, rep.Deleted, "kept: %+v", rep.KeptExamples)
	require.Zero(t, rep.KeptTotal())
	stats := l.srv.Stats()
	require.Zero(t, stats.Requests["DeleteObject"], "batches, conditional on each ETag, where S3 enforces them")
	require.EqualValues(t, (tot.Moves+999)/1000, stats.Requests["DeleteObjects"])

	// What is left under the legacy prefixes: the archived photos' objects
	// and the orphans.
	var left int64
	for _, p := range keylayout.LegacyPrefixes {
		keys, _, _ := l.listAll(t, s3.ListObjectsV2Input{Prefix: aws.String(p)}, 1000)
		left += int64(len(keys))
	}
	require.Equal(t, tot.Objects-tot.Moves, left)

	v, err := verify.Run(ctx, st, objects, verify.Options{})
	require.NoError(t, err)
	require.True(t, v.OK(), "problems: %+v", v.Problems)
	require.Equal(t, tot.Moves, v.LegacyDeleted)
	require.Empty(t, l.srv.Stats().NotImplemented)
}
