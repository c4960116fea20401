package soak

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
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
	rows, err := r.env.Store.Pool().Query(ctx, `SELECT photo_id FROM keymigrate.photo_moves WHERE state = 'in_progress' LIMIT 32`)
	if err != nil {
		return nil
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil
	}
	return ids
}

// copyRecord is the ledger's record of photoID's copy at newKey.
func (r *Runner) copyRecord(ctx context.Context, photoID, newKey string) (appsim.CopyRecord, error) {
	return r.readCopyRecord(ctx, `
SELECT coalesce(source_etag, ''), copied_at, committed_at IS NOT NULL FROM keymigrate.object_moves
 WHERE new_key = $1 AND photo_id = $2 AND discarded_at IS NULL`, newKey, photoID)
}

// copyRecordOf is the ledger's newest committed record of photoID's copy of
// legacy key oldKey.
func (r *Runner) copyRecordOf(ctx context.Context, photoID, oldKey string) (appsim.CopyRecord, error) {
	return r.readCopyRecord(ctx, `
SELECT coalesce(source_etag, ''), copied_at, true FROM keymigrate.object_moves
 WHERE old_key = $1 AND photo_id = $2 AND discarded_at IS NULL AND committed_at IS NOT NULL
 ORDER BY committed_at DESC LIMIT 1`, oldKey, photoID)
}

func (r *Runner) readCopyRecord(ctx context.Context, q string, args ...any) (appsim.CopyRecord, error) {
	rec := appsim.CopyRecord{Found: true}
	var copiedAt *time.Time
	err := r.env.Store.Pool().QueryRow(ctx, q, args...).Scan(&rec.SourceETag, &copiedAt, &rec.Committed)
	if errors.Is(err, pgx.ErrNoRows) {
		return appsim.CopyRecord{}, nil
	}
	if err != nil {
		return appsim.CopyRecord{}, fmt.Errorf("the ledger's record of a copy: %w", err)
	}
	if copiedAt != nil {
		rec.CopiedAt = *copiedAt
	}
	return rec, nil
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
