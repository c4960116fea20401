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
	ids := make([]string, len(owned))
	for i, o := range owned {
		ids[i] = o.PhotoID + "→" + o.OwnerID
	}
	r.note("archived assign at +%s: %d assigned, %d skipped, %d changed; the model has owned %v (err %v)", e.At, res.Assigned, len(res.Skipped), len(res.Changed), ids, err)
}

// archivedPurge runs `archived purge --older-than 1s --yes`: every photo
// archived so far, but for the last second.
func (r *Runner) archivedPurge(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	out, _, err := r.procs.Run(cctx, "migratectl", "archived", "purge", "--older-than", "1s", "--yes", "--json")
	r.count("archived_purge", err)
	_ = os.WriteFile(filepath.Join(r.dir, "purge.json"), []byte(out), 0o644) // kept for diagnosis
	var rep archived.PurgeReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		r.note("archived purge: %v; report unreadable: %v", err, jerr)
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
	r.note("archived purge: %d photos (%d complete), %d objects deleted, %d kept (err %v)", len(rep.Photos), complete, rep.Deleted, len(rep.Kept), err)
}
