package soak

import (
	"context"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// The application simulator's rewrites of legacy keys in place
// (appsim.OpRewriteInPlace) are judged against the ledger's record of each
// copy: which source version (by ETag) it stands for and when its ETag was
// recorded, before the worker's last read of the source (appsim.ExcuseInPlace).

// inFlight lists photos a worker holds right now, for the simulator's writes
// to aim at.
func (r *Runner) inFlight(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ids, err := ledgertest.PhotosInFlight(ctx, r.env.Store, 32)
	if err != nil {
		return nil
	}
	return ids
}

// copyRecord is the ledger's record of photoID's copy at newKey.
func (r *Runner) copyRecord(ctx context.Context, photoID, newKey string) (appsim.CopyRecord, error) {
	return ledgertest.ReadCopyAt(ctx, r.env.Store, photoID, newKey)
}

// copyRecordOf is the ledger's newest committed record of photoID's copy of
// legacy key oldKey.
func (r *Runner) copyRecordOf(ctx context.Context, photoID, oldKey string) (appsim.CopyRecord, error) {
	return ledgertest.ReadCommittedCopyOf(ctx, r.env.Store, photoID, oldKey)
}

// lostByDesign says whether verify's legacy_changed_after_move on photoID's
// legacy key is the window appsim.ExcuseInPlace excuses: the application
// rewrote that key in place after the copy was recorded, and the copy's
// record names an older source ("" if so, else why not).
func (r *Runner) lostByDesign(ctx context.Context, st appsim.PhotoState, legacyKey string) string {
	for _, o := range st.Objects {
		if o.Legacy != legacyKey {
			continue
		}
		if !o.RewrittenInPlace() {
			return "the application never rewrote it in place"
		}
		rec, err := r.copyRecordOf(ctx, st.ID, legacyKey)
		if err != nil {
			return err.Error()
		}
		return appsim.LostByDesign(o.Object, rec)
	}
	return "the photo has no object at this legacy key"
}
