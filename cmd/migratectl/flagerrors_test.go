package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/ops/cleanup"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/ops/rollback"
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
