package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	opsinv "github.com/keymigrate/keymigrate/internal/ops/inventory"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The libraries describe a condition; migratectl says it in its flags. Each
// case gives the error a library returns and checks what the operator reads:
// the flag, what was wrong and what to do, with the library's error still in
// the chain for the code that tells errors apart.

func TestPlanErrorNamesCalibrateRun(t *testing.T) {
	t.Parallel()
	lib := fmt.Errorf("calibrate from run %s: %w", "run-nope", plan.ErrRunMigratedNothing)
	err := planError(lib, plan.Options{CalibrateRun: "run-nope"})
	require.EqualError(t, err, "--calibrate-run run-nope: the ledger has no photo this run migrated; give another run (migratectl runs) or --calibrate N")
	require.ErrorIs(t, err, plan.ErrRunMigratedNothing)

	other := errors.New("list the bucket: timeout")
	require.Equal(t, other, planError(other, plan.Options{CalibrateRun: "run-nope"}), "other errors pass as they are")
}

func TestPlanMergeErrorSaysWhichCommandMakesTheMissingReport(t *testing.T) {
	t.Parallel()
	lib := fmt.Errorf("plan merge: %w 2/3: the merge needs the report of every shard 0/3 to 2/3", plan.ErrShardMissing)
	err := planMergeError(lib)
	require.EqualError(t, err, "plan merge: missing shard 2/3: the merge needs the report of every shard 0/3 to 2/3: run 'migratectl plan --shard i/n' for each missing i, with the same options as the other shards, and merge again with its report")
	require.ErrorIs(t, err, plan.ErrShardMissing)
	lib = fmt.Errorf("plan merge: one.json: %w (a plan of the whole bucket)", plan.ErrNotAShard)
	require.Contains(t, planMergeError(lib).Error(), "one.json: not a shard's partial report (a plan of the whole bucket): give the reports of 'migratectl plan --shard i/n'")
	other := errors.New("plan merge: duplicate shard 1/3")
	require.Equal(t, other, planMergeError(other))
}

func TestRollbackErrorNamesTheFlags(t *testing.T) {
	t.Parallel()
	err := rollbackError(rollback.ErrNothingSelected)
	require.EqualError(t, err, "say which photos to roll back: --photo ID, or --all (optionally with --run)")
	require.ErrorIs(t, err, rollback.ErrNothingSelected)

	lib := fmt.Errorf("%w: %d workers hold %d photos after %s", rollback.ErrFleetBusy, 2, 5, 30*time.Second)
	err = rollbackError(lib)
	require.EqualError(t, err, "the fleet holds photos: 2 workers hold 5 photos after 30s; pause the fleet (migratectl pause) and run rollback again once they finished (--wait 1m waits), or pass --force (safe: a worker's swap re-checks the ledger and does not migrate a rolled-back photo again)")
	require.ErrorIs(t, err, rollback.ErrFleetBusy)

	require.NoError(t, rollbackError(nil))
}

func TestAssignErrorSaysWhatToDoWithTheFlags(t *testing.T) {
	t.Parallel()
	lib := &archived.InputError{Source: "review.csv", Invalid: []archived.Invalid{
		{Line: 3, Text: "p1,bob", PhotoID: "p1", OwnerID: "bob", Reason: "owner id: bad"},
		{Line: 4, PhotoID: "p2", OwnerID: "u9", Reason: "owner u9 owns no photo: check the id (a typo would give the photo to nobody)", NewOwner: true},
	}}
	err := assignError(lib, "review.csv")
	require.EqualError(t, err, `review.csv: 2 of the assignments cannot be applied; nothing was changed. Fix them, remove them, or pass --skip-invalid to apply the others:
  line 3 "p1,bob": owner id: bad
  line 4: owner u9 owns no photo: check the id (a typo would give the photo to nobody), or pass --allow-new-owner if this owner has no other photo`)
	var ie *archived.InputError
	require.ErrorAs(t, err, &ie)

	direct := &archived.InputError{Source: "--photo", Invalid: []archived.Invalid{{PhotoID: "p1", OwnerID: "u1", Reason: "unknown photo id"}}}
	require.EqualError(t, assignError(direct, ""), "--photo: 1 of the assignments cannot be applied; nothing was changed. Fix them, remove them, or pass --skip-invalid to apply the others:\n  photo p1: unknown photo id")

	err = assignError(archived.ErrNothingToAssign, "review.csv")
	require.EqualError(t, err, "--from review.csv: nothing to assign: the file has no photo_id,owner_id line")
	require.ErrorIs(t, err, archived.ErrNothingToAssign)
	require.EqualError(t, assignError(archived.ErrNothingToAssign, ""), "nothing to assign: give --photo and --owner, or --from a CSV of photo_id,owner_id lines")
}

func TestCleanupErrorNamesAllowFullScans(t *testing.T) {
	t.Parallel()
	lib := fmt.Errorf("check indexes: %w", &cleanup.MissingIndexesError{Rows: 2000000, Missing: []string{"CREATE INDEX CONCURRENTLY a ON photos (x)"}})
	err := cleanupError(lib)
	require.EqualError(t, err, lib.Error()+"\nor pass --allow-full-scans to run without them")
	var missing *cleanup.MissingIndexesError
	require.ErrorAs(t, err, &missing)
	require.NotContains(t, lib.Error(), "--allow-full-scans", "the library describes the condition; the command names its flag")

	other := errors.New("list the bucket: timeout")
	require.Equal(t, other, cleanupError(other))
	require.NoError(t, cleanupError(nil))
}

// The ledger's and the inventory loader's errors about the S3 Inventory
// read, in migratectl's words, exactly as the operator read them when the
// libraries named the flags themselves.
func TestInventoryErrorsNameTheCommandAndItsFlags(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"not loaded", fmt.Errorf("verify: %w", ledger.ErrInventoryNotLoaded),
			"verify: no S3 Inventory report is completely loaded: run `migratectl inventory load --inventory LOCATION` (or finish the load in progress)"},
		{"emptied", ledger.ErrInventoryEmptied,
			"the loaded S3 Inventory report's objects are gone (a Postgres crash or failover empties the unlogged table): run `migratectl inventory load` again"},
		{"older", &ledger.InventoryOlderError{Current: created.Add(time.Hour), Given: created},
			"the S3 Inventory report of 2026-01-02T03:04:05Z is older than the current one (2026-01-02T04:04:05Z): load a report at least as recent, or forget the current one first (migratectl inventory load --replace-newer)"},
		{"another bucket", &opsinv.BucketError{Location: "s3://inv/photos/cfg/2026-01-02T00-00Z/manifest.json", ReportBucket: "photos", MigrationBucket: "photos-eu"},
			`inventory s3://inv/photos/cfg/2026-01-02T00-00Z/manifest.json is a report of bucket "photos", but this migration's bucket is "photos-eu" (--bucket, KEYMIGRATE_BUCKET): ` +
				`give the report of an inventory configured on "photos-eu" (its reports are under …/photos-eu/<configuration-ID>/), or point --bucket at "photos" if that is the bucket to migrate`},
	} {
		require.NotContains(t, c.err.Error(), "migratectl", "%s: the library describes the condition", c.name)
		require.NotContains(t, c.err.Error(), "--", "%s: the library names no flag", c.name)
		err := inventoryError(c.err)
		require.EqualError(t, err, c.want, c.name)
		require.ErrorIs(t, err, c.err, "%s: the library's error stays in the chain", c.name)
	}
	other := errors.New("list the bucket: timeout")
	require.Equal(t, other, inventoryError(other))
	require.NoError(t, inventoryError(nil))
}
