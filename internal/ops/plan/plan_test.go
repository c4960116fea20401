package plan_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/producer"
)

type testBundle struct {
	env    *testenv.Env
	opts   seed.Options
	photos []seed.Photo
}

func setup(t *testing.T, o seed.Options) *testBundle {
	t.Helper()
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	env.Seed(t, o)
	return &testBundle{env: env, opts: o, photos: seed.Generate(o)}
}

func (b *testBundle) plan(t *testing.T, o plan.Options) *plan.Report {
	t.Helper()
	r, err := plan.Run(context.Background(), b.env.Store, b.env.Objects, o)
	require.NoError(t, err)
	return r
}

// bucket lists every key with its ETag.
func (b *testBundle) bucket(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	require.NoError(t, b.env.Objects.ListEach(context.Background(), "", func(k string, _ int64, etag string) error {
		m[k] = etag
		return nil
	}))
	return m
}

// rows renders the whole photos table.
func (b *testBundle) rows(t *testing.T) string {
	t.Helper()
	var s string
	require.NoError(t, b.env.Store.Pool().QueryRow(context.Background(), `SELECT coalesce(string_agg(p::text, E'\n' ORDER BY id), '') FROM photos p`).Scan(&s))
	return s
}

func TestPlanCountsWhatWillMoveAndEveryProblem(t *testing.T) {
	b := setup(t, seed.Options{Photos: 80, Seed: 91, OwnerlessRate: 0.1, OrphanRate: 0.1})
	env, ctx := b.env, context.Background()

	// Expected from the seed: photos with an owner move all their objects.
	var toMigrate, copies, ownerless, orphans int64
	var copyBytes int64
	for _, p := range b.photos {
		if p.OrphanObject != nil {
			orphans++
		}
		if p.OwnerID == nil {
			ownerless++
			continue
		}
		toMigrate++
		for _, o := range p.Objects {
			copies++
			copyBytes += o.Size
		}
	}

	// A photo whose original is gone.
	var victim seed.Photo
	for _, p := range b.photos {
		if p.OwnerID != nil {
			victim = p
			break
		}
	}
	require.NoError(t, env.Objects.Delete(ctx, victim.Original))
	copies--
	copyBytes -= victim.Objects[0].Size

	// A second row referencing another photo's original (a duplicated photo):
	// the object is shared, and copied once more, with the job's derived
	// objects.
	var dup seed.Photo
	for _, p := range b.photos[1:] {
		if p.OwnerID != nil && p.ID != victim.ID {
			dup = p
			break
		}
	}
	env.InsertPhoto(t, uuid.NewString(), dup.OwnerID, dup.Original, nil, nil)
	toMigrate++
	for _, o := range dup.Objects {
		if o.Key == dup.Original || strings.HasPrefix(o.Key, "meta/") || strings.HasPrefix(o.Key, "animated/") {
			copies++
			copyBytes += o.Size
		}
	}

	// Rows that workers would dead-letter, and unrecognised objects.
	env.InsertPhoto(t, uuid.NewString(), testenv.Ptr("../etc"), dup.Original, nil, nil)
	env.InsertPhoto(t, uuid.NewString(), dup.OwnerID, "uploaded/a/b.jpg", nil, nil)
	weird := []string{"uploaded/ space.jpg", "uploaded/~tilde.jpg", "uploaded/é.jpg", "uploaded/\x7fdel.jpg", "meta/x/y.json", "thumbnails/a.png"}
	for _, k := range weird {
		env.Put(t, k, []byte("x"), "image/jpeg", nil)
	}

	bucketBefore, rowsBefore := b.bucket(t), b.rows(t)
	r := b.plan(t, plan.Options{Examples: 3, Top: 4, Workers: 2, Concurrency: 4})

	// The listing saw every legacy object exactly once, across its shards.
	require.EqualValues(t, len(bucketBefore), r.Listing.Objects, "every key of the bucket is under a legacy prefix here")
	require.Equal(t, 5*96, r.Listing.Shards, "per prefix: 94 characters ('.' and '/' one range), below ' ', above '~'")
	require.GreaterOrEqual(t, r.Listing.Requests, int64(r.Listing.Shards))
	require.Equal(t, bucketBefore, b.bucket(t), "plan writes nothing to the bucket")
	require.Equal(t, rowsBefore, b.rows(t), "plan changes no row")

	require.EqualValues(t, toMigrate, r.Photos.ToMigrate)
	require.EqualValues(t, ownerless, r.Photos.Ownerless)
	require.EqualValues(t, 1, r.Photos.InvalidID)
	require.EqualValues(t, 1, r.Photos.UnrecognisedKeys)
	require.EqualValues(t, int64(len(b.photos))+3, r.Photos.LegacyRows)
	require.EqualValues(t, copies, r.Copies.Objects)
	require.EqualValues(t, copyBytes, r.Copies.Bytes)
	require.Zero(t, r.Copies.Multipart)

	missing := r.Problem("rows_pointing_at_missing_objects")
	require.EqualValues(t, 1, missing.Count)
	require.Equal(t, victim.ID, missing.Examples[0].PhotoID)
	require.Equal(t, victim.Original, missing.Examples[0].Key)
	require.EqualValues(t, len(weird), r.Problem("unrecognised_legacy_objects").Count)
	require.EqualValues(t, 1, r.Problem("invalid_owner_or_photo_ids").Count)
	require.Contains(t, r.Problem("rows_with_unrecognised_keys").Examples[0].Detail, "uploaded/a/b.jpg")
	require.EqualValues(t, ownerless, r.Problem("ownerless_photos").Count)
	shared := r.Problem("legacy_objects_shared_by_rows")
	require.EqualValues(t, 1, shared.Count)
	require.Equal(t, dup.Original, shared.Examples[0].Key)
	require.EqualValues(t, 3, shared.Examples[0].Rows, "the photo, its duplicate and the invalid-owner row")
	require.EqualValues(t, orphans, r.Problem("orphans").Count)
	require.Zero(t, r.Problem("objects_in_archive_storage_classes").Count)

	require.Len(t, r.Largest, 4)
	for i := 1; i < len(r.Largest); i++ {
		require.GreaterOrEqual(t, r.Largest[i-1].Size, r.Largest[i].Size)
	}

	// The estimate's request counts follow the workers' requests.
	byOp := map[string]int64{}
	for _, q := range r.Estimate.Requests {
		byOp[q.Service+" "+q.Operation] = q.Count
	}
	meta := r.Copies.ByKind["metadata"].Objects
	require.Positive(t, meta)
	require.Less(t, meta, r.Photos.ToMigrate, "some photos' jobs have no metadata")
	require.Equal(t, r.Copies.Objects-meta+r.Photos.ToMigrate, byOp["s3 HeadObject"], "copied first: one read of each source but the metadata's, after its copy; a HEAD of each photo's metadata, with the listing")
	require.Equal(t, r.Copies.Objects, byOp["s3 CopyObject"], "one copy per object: none of a metadata that does not exist")
	require.Equal(t, r.Photos.ToMigrate, byOp["s3 ListObjectsV2"])
	require.Equal(t, r.Photos.ToMigrate, byOp["sqs DeleteMessage"])
	require.Equal(t, plan.NotCalibrated, r.Estimate.Calibration.Source, "no ledger history and no --calibrate")
	require.Zero(t, r.Estimate.SecondsP50)

	var text bytes.Buffer
	require.NoError(t, r.WriteText(&text))
	for _, want := range []string{"rows pointing at missing objects", victim.Original, "to migrate", "ESTIMATE", "latency", "check them against the current price list"} {
		require.Contains(t, text.String(), want)
	}
}

func TestPlanCalibratesOnAScratchCopyAndLeavesNothingBehind(t *testing.T) {
	b := setup(t, seed.Options{Photos: 30, Seed: 92})
	bucketBefore, rowsBefore := b.bucket(t), b.rows(t)
	r := b.plan(t, plan.Options{Calibrate: 6, Workers: 3, Concurrency: 4, GraceDays: 10})
	c := r.Estimate.Calibration
	require.Equal(t, plan.CalibratedByScratchCopy, c.Source)
	require.EqualValues(t, 6, c.Photos)
	require.Greater(t, c.Deleted, int64(6), "every object of the six photos was copied, then deleted")
	require.Greater(t, c.P50, 0.0)
	require.GreaterOrEqual(t, c.P90, c.P50)
	require.Equal(t, bucketBefore, b.bucket(t), "the scratch copies are gone and nothing else changed")
	require.Equal(t, rowsBefore, b.rows(t))
	n := ledgertest.Rows(t, b.env.Store, ledgertest.TallyPhotoMoves, ledgertest.TallyObjectMoves, ledgertest.TallyRuns)

	require.Zero(t, n, "the ledger is untouched")

	e := r.Estimate
	want := min(12/c.P50, e.S3Ceiling)
	require.InDelta(t, want, e.PhotosPerSecondP50, want*1e-9)
	require.InDelta(t, float64(r.Photos.ToMigrate)/want, e.SecondsP50, 1e-9)
	require.InDelta(t, e.StoragePerDay*10, e.StorageGrace, 1e-12)
	require.InDelta(t, float64(r.Copies.Bytes)/(1<<30)*0.023/30, e.StoragePerDay, 1e-15)

	_, err := plan.Run(context.Background(), b.env.Store, b.env.Objects, plan.Options{Calibrate: 1, ScratchPrefix: "users/scratch/"})
	require.ErrorContains(t, err, "outside users/")
	_, err = plan.Run(context.Background(), b.env.Store, b.env.Objects, plan.Options{Calibrate: 1, ScratchPrefix: "uploaded/x/"})
	require.ErrorContains(t, err, "legacy prefixes")
}

func TestPlanAfterAFirstStageReadsTheLedger(t *testing.T) {
	b := setup(t, seed.Options{Photos: 60, Seed: 93, OwnerlessRate: 0.01})
	stage := b.env.MigrateWith(t, producer.Config{Selection: &ledger.Selection{SamplePercent: 25}})
	r := b.plan(t, plan.Options{})
	require.EqualValues(t, 60-stage.Enqueued, r.Photos.LegacyRows+0, "the stage's photos are no longer legacy")
	require.Positive(t, r.AlreadyMoved)
	var orphans int64
	for _, p := range b.photos {
		if p.OrphanObject != nil {
			orphans++
		}
	}
	require.EqualValues(t, orphans, r.Problem("orphans").Count, "moved objects are not orphans")
	c := r.Estimate.Calibration
	require.Equal(t, plan.CalibratedFromLedger, c.Source)
	require.EqualValues(t, stage.Enqueued-stage.Ownerless, c.Photos)
	require.Positive(t, r.Estimate.SecondsP50)
	// The run's slots were not all busy all the time: the fleet is counted
	// at the share it kept busy (make staged-bench measured why).
	require.Positive(t, c.PeakInFlight)
	require.Greater(t, c.Occupancy, 0.0)
	require.LessOrEqual(t, c.Occupancy, 1.0)
	e := r.Estimate
	want := min(float64(e.Workers*e.Concurrency)*c.Occupancy/c.P50, e.S3Ceiling)
	require.InDelta(t, want, e.PhotosPerSecondP50, want*1e-9)

	r = b.plan(t, plan.Options{CalibrateRun: stage.RunID})
	require.Equal(t, stage.RunID, r.Estimate.Calibration.Run)
	_, err := plan.Run(context.Background(), b.env.Store, b.env.Objects, plan.Options{CalibrateRun: "run-nope"})
	require.ErrorIs(t, err, plan.ErrRunMigratedNothing)
	require.ErrorContains(t, err, "run-nope")
}
