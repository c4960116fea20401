package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// The operator's review of the archived photos (-soak.archived-ops,
// Config.WithArchivedOps). `archived assign` gives a few archived ownerless
// photos an owner: the application model learns each photo's owner from its
// row once the command has ended (appsim.Sim.AssignArchived), so end_state
// then wants it migrated under exactly that owner. `archived purge --yes`
// deletes the legacy objects of the photos archived so far that no other row
// needs, records each deletion and the photo as purged, and leaves the rows
// (docs/guarantees.md): end_state still wants them archived with their keys
// untouched, cleanup_accounted finds purge's recorded deletion for each
// object gone, and needed_legacy_kept excuses an object only when every live
// row that needs it is a photo the purge completed.

// archivedAssign runs one `archived assign --from FILE --skip-invalid`.
func (r *Runner) archivedAssign(ctx context.Context, e Event) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(e.At)))
	path := filepath.Join(r.dir, fmt.Sprintf("assign-%d.csv", e.At.Milliseconds()))
	start := time.Now()
	var out string
	owned, err := r.sim.AssignArchived(ctx, rng, e.N, func(items []appsim.AssignItem) error {
		var b strings.Builder
		b.WriteString("photo_id,owner_id\n")
		for _, it := range items {
			fmt.Fprintf(&b, "%s,%s\n", it.PhotoID, it.OwnerID)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		var err error
		out, _, err = r.procs.Run(cctx, "migratectl", "archived", "assign", "--from", path, "--skip-invalid", "--by", "soak", "--json")
		_ = os.WriteFile(path+".json", []byte(out), 0o644) // kept for diagnosis
		return err
	})
	if appsim.IsNoneToAssign(err) {
		r.note("archived assign at +%s: no archived ownerless photo yet", e.At)
		return
	}
	r.count("archived_assign", err)
	var res archived.Result
	_ = json.Unmarshal([]byte(out), &res)
	if err != nil {
		r.noteFailedAssign(res.RunID, start)
	}
	ids := make([]string, len(owned))
	for i, o := range owned {
		ids[i] = o.PhotoID + "→" + o.OwnerID
	}
	r.note("archived assign at +%s: %d assigned, %d skipped, %d changed; the model has owned %v (err %v)", e.At, res.Assigned, len(res.Skipped), len(res.Changed), ids, err)
}

// archivedPurge runs `archived purge --older-than 1s --yes`: every photo
// archived so far, but for the last second. One that fails or is killed by
// its time limit is run again at the finish (rerunFailedPurges), as an
// operator would.
func (r *Runner) archivedPurge(ctx context.Context) {
	start := time.Now()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.purgeLimit(ctx))
	defer cancel()
	out, _, err := r.procs.Run(cctx, "migratectl", "archived", "purge", "--older-than", "1s", "--yes", "--json")
	r.count("archived_purge", err)
	if err != nil {
		r.mu.Lock()
		r.purgesToRerun = append(r.purgesToRerun, start)
		r.mu.Unlock()
	}
	r.notePurge("archived purge", out, err)
}

// purgeLimit is the time an operator gives one `archived purge`: scaled to
// the photos archived so far, each purged one by one (a listing, HEADs and
// up to five deletes, each recorded) and, during the run, under faults. A
// flat two minutes killed the purge of a 30-minute run's 60 archived photos
// (F16, seed 249867). It stays under the three minutes the finish waits for
// operator commands past the chaos, plus the 20% of the run left after the
// scheduled purge, for runs of ten minutes or more.
func (r *Runner) purgeLimit(ctx context.Context) time.Duration {
	n, err := ledgertest.CountMovesIn(ctx, r.env.Store, ledger.StateArchived)
	if err != nil {
		return 2 * time.Minute
	}
	return min(max(2*time.Minute, time.Duration(n)*6*time.Second), 8*time.Minute)
}

// rerunFailedPurges runs again, to completion and with the finish's retries,
// each scheduled `archived purge` that failed or was killed: the operator
// whose purge was interrupted reruns it. Each rerun keeps its purge's
// cutoff (archived before the purge began, less a second); the rerun
// completes the deletions an interrupted purge left as intents (F15).
func (r *Runner) rerunFailedPurges(ctx context.Context) {
	r.mu.Lock()
	starts := append([]time.Time(nil), r.purgesToRerun...)
	r.mu.Unlock()
	for _, s := range starts {
		older := time.Since(s).Round(time.Second) + time.Second
		r.logf("soak: rerunning the archived purge of %s (it failed or was killed)", s.Format("15:04:05"))
		out, err := r.operatorRetry(ctx, "archived_purge_rerun", r.purgeLimit(ctx), "migratectl", "archived", "purge", "--older-than", older.String(), "--yes", "--json")
		r.notePurge("archived purge (rerun)", out, err)
	}
}

// notePurge adds what a purge reported deleting and handling to what the
// checks excuse, and notes it.
func (r *Runner) notePurge(what, out string, err error) {
	_ = os.WriteFile(filepath.Join(r.dir, fmt.Sprintf("purge-%d.json", time.Now().UnixMilli())), []byte(out), 0o644) // kept for diagnosis
	var rep archived.PurgeReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		r.note("%s: %v; report unreadable: %v", what, err, jerr)
		return
	}
	complete := 0
	r.mu.Lock()
	if r.purgedKeys == nil {
		r.purgedKeys, r.purgedPhotos = map[string]bool{}, map[string]bool{}
	}
	for _, p := range rep.Photos {
		if p.Complete {
			complete++
		}
		r.purgedPhotos[p.PhotoID] = true
		for _, k := range p.Keys {
			r.purgedKeys[k] = true
		}
	}
	r.mu.Unlock()
	r.note("%s: %d photos (%d complete), %d objects deleted, %d kept (err %v)", what, len(rep.Photos), complete, rep.Deleted, len(rep.Kept), err)
}
