// Package cleanup is Phase 4: it deletes legacy objects, and only those the
// ledger recorded as moved, once no row needs them any more.
//
// Legacy objects are shared: a job may be referenced or derived by several
// rows (a duplicated photo, an ownerless copy, a row inserted after the
// producer ran). A legacy object is deleted only when every row that
// references or derives it is migrated with its own verified copy:
//   - no photos row (archived, failed, pending or rolled back ones included)
//     references a legacy key of its job;
//   - every photo the ledger or a move ties to the object, whose row still
//     exists, has a committed move of it, past the grace period (counted from
//     that move's commit), whose new copy still has the recorded size and
//     checksum (or which the application superseded with its own object);
//   - the legacy object still has the ETag its copies were made from.
//
// Right before the delete the rows are read again (a rollback, a new row),
// the intent is recorded in the ledger with the ETag, and the delete is
// conditional on that ETag where the server allows. Photos whose rows are
// gone (the application deleted them) need nothing: their legacy objects go
// when no other row needs them, and they are reported. Deletions are batched
// and recorded.
//
// A pass splits across machines: shard i of n walks the legacy objects whose
// job hashes into the i-th of n equal slices of the hash space
// (ledger.CleanupShardRange), and keeps its cursor and its tally (counts and
// a few examples, never lists) in the ledger (ledger.PassCleanup): killed at
// any point and run again with the same arguments it continues after the last
// page it finished; a finished shard is not redone (Reset starts a pass over).
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Options tune a cleanup.
type Options struct {
	Grace       time.Duration
	DryRun      bool
	Batch       int // legacy objects per page (at most 1,000: one DeleteObjects)
	Concurrency int // HEADs and conditional deletes in flight
	// Shard and Shards select shard Shard of Shards (0 <= Shard < Shards);
	// Shards 0 means one shard, the whole ledger.
	Shard, Shards int
	// Again starts the shard over if it finished (a cleanup run every so
	// often as more moves pass the grace period); without it a finished
	// shard is not redone.
	Again bool
	// Inventory, if set, is a loaded S3 Inventory report: a copy it vouches
	// for (present with the size and ETag the ledger recorded, and written
	// and committed before the report's date) is not HEADed
	// (docs/inventory.md, cleanup). The legacy object is HEADed still, and
	// its delete is conditional on its ETag where S3 allows.
	Inventory *ledger.InventoryReport
	// AllowFullScans runs even where the photos table lacks the indexes
	// cleanup finds a job's rows through (ledger.ApplicationIndexes), each
	// page then reading the whole table. Without it cleanup refuses a table
	// of FullScanRows rows or more (default 1,000,000) that lacks one.
	AllowFullScans bool
	FullScanRows   int64
	// List, if set, receives a tab-separated line per legacy object deleted
	// (dry: would be) or kept, and per deleted photo found: the full list the
	// report only counts. A page redone after a kill is listed again.
	List io.Writer
	// Holder names this process in the shard's lease (the host, the pid and
	// a random suffix when empty): one process runs a shard at a time, and a
	// second one is refused with a *ledger.LeaseHeldError naming the holder.
	Holder string
	// LeaseTTL is how long the lease holds unless renewed (default 2
	// minutes): it is renewed every third of it while the shard runs, and a
	// process that died leaves the shard to the next one once it lapses.
	LeaseTTL time.Duration
	// Progress, if set, is called after each page with the totals so far.
	Progress func(r *Report)
	// hooks let cleanup's own tests act between its steps (nil in
	// production).
	hooks hooks
}

// hooks are called at points cleanup's tests need to reach. They are not part
// of Options as a user fills it in: only cleanup's own tests set them
// (through WithHooks in export_test.go), and production leaves them nil.
type hooks struct {
	// beforeDelete runs after the checks, before the rows are read again
	// and the delete is claimed.
	beforeDelete func(ctx context.Context, keys []string) error
	// afterClaim runs after the delete was claimed, before the rows are read
	// once more and the objects deleted.
	afterClaim func(ctx context.Context, keys []string) error
	// afterDelete runs between the delete and its record.
	afterDelete func(ctx context.Context, keys []string) error
}

// Why a legacy object is kept.
const (
	KeptStillNeeded   = "still_needed"          // a row references its job, or a photo of its job has no copy of its own
	KeptInGrace       = "inside_grace_period"   // a move of it committed less than --grace ago
	KeptCopyMissing   = "new_copy_missing"      // the application deleted the copy (or it was lost)
	KeptCopyRewritten = "new_copy_rewritten"    // the application wrote newer bytes over the copy
	KeptLegacyChanged = "legacy_changed"        // the legacy object changed after it was copied
	KeptLegacyGone    = "legacy_gone"           // already gone
	KeptNoCopy        = "no_committed_copy"     // nothing to rely on
	KeptRaced         = "changed_before_delete" // rows changed between the checks and the delete
	KeptNotDeleted    = "not_deleted"           // the conditional delete refused, or S3 failed it
)

// Scope names a pass by what changes its decisions (the grace period, dry or
// not): a rerun with other values is a pass of its own, with its own cursors.
func Scope(o Options) string {
	s := "grace=" + o.Grace.String()
	if o.DryRun {
		s += " dry-run"
	}
	return s
}

func (o Options) normalize() (Options, error) {
	if o.Grace < 0 {
		return o, errors.New("the grace period cannot be negative")
	}
	if o.Batch <= 0 || o.Batch > 1000 {
		o.Batch = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Shards == 0 && o.Shard == 0 {
		o.Shards = 1
	}
	if o.FullScanRows <= 0 {
		o.FullScanRows = 1_000_000
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = ledger.DefaultLeaseTTL
	}
	if o.Holder == "" {
		o.Holder = ledger.LeaseHolderName()
	}
	if _, _, err := ledger.CleanupShardRange(o.Shard, o.Shards); err != nil {
		return o, err
	}
	return o, nil
}

// Run runs shard o.Shard of o.Shards of a cleanup pass: from its cursor in
// the ledger to the end of its range, a page at a time, the cursor and the
// tally advanced after each page's deletions are recorded. It returns the
// shard's report, the pages of earlier runs of the same pass included; a
// shard already finished is not redone (Report.AlreadyFinished).
func Run(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options) (_ *Report, err error) {
	o, err = o.normalize()
	if err != nil {
		return nil, err
	}
	if err := checkIndexes(ctx, st, o); err != nil {
		return nil, err
	}
	cur, err := st.PassCursorJoin(ctx, ledger.PassCleanup, Scope(o), o.Shard, o.Shards)
	if err != nil {
		return nil, err
	}
	// One process per shard: take the shard's lease before anything else
	// (a restart of a finished shard included), hold it while running.
	ctx, lease, err := st.PassLeaseHold(ctx, cur, o.Holder, o.LeaseTTL)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	defer func() { err = lease.Why(err) }()
	cur.Holder = o.Holder
	if cur.Done() && o.Again {
		if cur, err = st.PassCursorRestart(ctx, cur); err != nil {
			return nil, err
		}
		cur.Holder = o.Holder
	}
	rep, err := resume(o, cur.Tally)
	if err != nil {
		return nil, err
	}
	rep.TookOverFrom = lease.Previous
	if cur.Done() {
		rep.Finished, rep.AlreadyFinished = true, true
		return rep, nil
	}
	if !o.DryRun {
		if err := recoverPending(ctx, st, objects, o, rep); err != nil {
			return rep, err
		}
	}
	after := cur.Cursor
	for {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("cleanup interrupted (run it again with the same arguments to resume): %w", err)
		}
		keys, next, err := st.CleanupListKeys(ctx, o.Shard, o.Shards, after, o.Batch)
		if err != nil {
			return rep, err
		}
		if len(keys) == 0 {
			rep.Finished = true
			return rep, st.PassCursorFinish(ctx, cur, rep.snapshot())
		}
		if err := pass(ctx, st, objects, o, keys, rep); err != nil {
			return rep, err
		}
		flush(o.List)
		after = next
		if err := st.PassCursorAdvance(ctx, cur, after, rep.snapshot()); err != nil {
			return rep, err
		}
		if o.Progress != nil {
			o.Progress(rep)
		}
	}
}

func flush(w io.Writer) {
	if f, ok := w.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
}

// Reset forgets the cursors of every shard of the pass o names (its scope and
// shard count), so that the next run of each shard starts over: after the
// grace period ends for more objects, or after the application changed rows.
func Reset(ctx context.Context, st *ledger.Store, o Options) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	return st.PassCursorReset(ctx, ledger.PassCleanup, Scope(o), o.Shards)
}

// PassReport is the state of one cleanup pass: each shard's report as its
// cursor has it, and their union.
type PassReport struct {
	Scope  string    `json:"scope"`
	Shards int       `json:"shards"`
	Each   []*Report `json:"each"`
	// Missing are the shards that never ran.
	Missing []int   `json:"missing"`
	Total   *Report `json:"total"`
	// Cursors are the shards' places (for a person; "" before the first page).
	Cursors []string `json:"cursors"`
	// Leases say who runs each shard of Each and when its lease lapses.
	Leases []ledger.PassLeaseState `json:"leases"`
}

// Status reads the cleanup passes the ledger has cursors for, newest first.
func Status(ctx context.Context, st *ledger.Store) ([]PassReport, error) {
	all, err := st.PassCursorListAll(ctx, ledger.PassCleanup)
	if err != nil {
		return nil, err
	}
	type id struct {
		scope  string
		shards int
	}
	var order []id
	byID := map[id][]ledger.PassCursor{}
	for _, c := range all {
		k := id{c.Scope, c.Shards}
		if _, ok := byID[k]; !ok {
			order = append(order, k)
		}
		byID[k] = append(byID[k], c)
	}
	var out []PassReport
	for _, k := range order {
		pr, err := passReport(k.scope, k.shards, byID[k])
		if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, nil
}

func passReport(scope string, shards int, cs []ledger.PassCursor) (PassReport, error) {
	pr := PassReport{Scope: scope, Shards: shards, Total: &Report{Scope: scope, Shards: shards, Kept: map[string]int64{}, Finished: true}}
	seen := map[int]bool{}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Shard < cs[j].Shard })
	for _, c := range cs {
		r, err := resume(Options{Shard: c.Shard, Shards: c.Shards}, c.Tally)
		if err != nil {
			return pr, err
		}
		r.Scope, r.Shard, r.Shards, r.Finished = scope, c.Shard, c.Shards, c.Done()
		r.DryRun = strings.HasSuffix(scope, " dry-run")
		pr.Total.DryRun = r.DryRun
		seen[c.Shard] = true
		pr.Each = append(pr.Each, r)
		pr.Cursors = append(pr.Cursors, c.Cursor)
		pr.Leases = append(pr.Leases, c.Lease)
		pr.Total.Merge(r)
	}
	for i := 0; i < shards; i++ {
		if !seen[i] {
			pr.Missing = append(pr.Missing, i)
			pr.Total.Finished = false
		}
	}
	return pr, nil
}

// recoverPending settles deletes an earlier run of this shard intended and
// may have made without recording them: gone now means deleted; still there,
// the intent is withdrawn and the object is checked afresh. Only the shard's
// own intents: another shard's may be a delete in flight.
func recoverPending(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options, rep *Report) error {
	pending, err := st.CleanupListPending(ctx, o.Shard, o.Shards)
	if err != nil || len(pending) == 0 {
		return err
	}
	var mu sync.Mutex
	var gone, back []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Concurrency)
	for k := range pending {
		g.Go(func() error {
			ok, err := objects.Exists(gctx, k)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if ok {
				back = append(back, k)
			} else {
				gone = append(gone, k)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for len(gone) > 0 {
		n := min(len(gone), 1000)
		if err := st.CleanupMarkDeleted(ctx, gone[:n]); err != nil {
			return err
		}
		rep.Recovered += int64(n)
		gone = gone[n:]
	}
	return st.CleanupClearIntent(ctx, back)
}

// candidate is one legacy object and what decides its fate.
type candidate struct {
	key   string
	job   string
	moves []ledger.ObjectMove
	etag  string // the legacy object's ETag, read by check
	size  int64
	ok    bool
}

// pass checks a batch of legacy objects, reads the rows again, and deletes
// those that may go.
func pass(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options, keys []string, rep *Report) error {
	ok, err := checkPage(ctx, st, objects, o, keys, rep)
	if err != nil || len(ok) == 0 {
		return err
	}
	if o.DryRun {
		for _, c := range ok {
			rep.deleted(c.key, c.size)
		}
		return nil
	}
	if o.hooks.beforeDelete != nil {
		if err := o.hooks.beforeDelete(ctx, candidateKeys(ok)); err != nil {
			return err
		}
	}
	final, etags, err := claimPage(ctx, st, ok, rep)
	if err != nil || len(final) == 0 {
		return err
	}
	if o.hooks.afterClaim != nil {
		if err := o.hooks.afterClaim(ctx, candidateKeys(final)); err != nil {
			return err
		}
	}
	if final, err = withdrawRaced(ctx, st, final, etags, rep); err != nil || len(final) == 0 {
		return err
	}
	return deleteClaimed(ctx, st, objects, o, final, etags, rep)
}

// checkPage reads the ledger's moves and rows for a page of legacy keys and
// checks every candidate (each its HEADs at once), returning those cleanup may
// delete by its rules.
func checkPage(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options, keys []string, rep *Report) ([]*candidate, error) {
	rep.checked(len(keys))
	moves, err := st.ObjectMoveListByOldKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	byKey := map[string]*candidate{}
	var cands []*candidate
	for _, k := range keys {
		c := &candidate{key: k, job: ledger.JobOf(k)}
		byKey[k] = c
		cands = append(cands, c)
	}
	for _, m := range moves {
		byKey[m.OldKey].moves = append(byKey[m.OldKey].moves, m)
	}
	w, err := readWorld(ctx, st, cands)
	if err != nil {
		return nil, err
	}
	if err := recordDeletedPhotos(ctx, st, w, rep); err != nil {
		return nil, err
	}
	if w.inventory, err = lookUpCopies(ctx, st, o.Inventory, w, cands); err != nil {
		return nil, err
	}
	w.report = o.Inventory
	// Every candidate at once, every HEAD of a candidate at once: the
	// semaphore, not the candidates, bounds the requests in flight.
	sem := make(chan struct{}, o.Concurrency)
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range cands {
		g.Go(func() error { return check(gctx, objects, sem, o, w, c, rep) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var ok []*candidate
	for _, c := range cands {
		if c.ok {
			ok = append(ok, c)
		}
	}
	return ok, nil
}

// claimPage reads the rows again right before the delete (a rollback or a
// new row since the checks keeps the object) and records the intent to
// delete what is still unneeded. It returns the claimed candidates and the
// ETag each delete is conditional on.
func claimPage(ctx context.Context, st *ledger.Store, ok []*candidate, rep *Report) ([]*candidate, map[string]string, error) {
	again, err := readWorld(ctx, st, ok)
	if err != nil {
		return nil, nil, err
	}
	var claims []ledger.Claim
	raced := map[string]bool{}
	for _, c := range ok {
		if why, who := needed(again, c); why != "" {
			raced[c.key] = true
			rep.skip(Skip{PhotoID: who, OldKey: c.key, Kind: KeptRaced, Reason: why + " (seen right before the delete)"})
			continue
		}
		claims = append(claims, ledger.Claim{OldKey: c.key, ETag: c.etag, Photos: movers(c)})
	}
	if len(claims) == 0 {
		return nil, nil, nil
	}
	// Claim them in one transaction with the photos' rows locked and looked
	// at once more: a rollback cannot slip in between (see CleanupClaim).
	claimed, err := st.CleanupClaim(ctx, claims)
	if err != nil {
		return nil, nil, err
	}
	isClaimed := map[string]bool{}
	for _, k := range claimed {
		isClaimed[k] = true
	}
	etags := map[string]string{}
	var final []*candidate
	for _, c := range ok {
		switch {
		case isClaimed[c.key]:
			etags[c.key] = c.etag
			final = append(final, c)
		case !raced[c.key]:
			rep.skip(Skip{OldKey: c.key, Kind: KeptRaced, Reason: "a photo that moved it was rolled back or changed right before the delete"})
		}
	}
	return final, etags, nil
}

// withdrawRaced reads the rows once more now that the intent is committed: a
// row the application inserted since the last read (a duplicate sharing these
// objects) shows here, or the application, checking after its insert, sees
// the intent and withdraws its row (ledger.PhotoLegacyKeysClaimed). One of the
// two always sees the other. What a row needs again is withdrawn (its intent
// cleared, its ETag taken out of etags); the rest is returned.
func withdrawRaced(ctx context.Context, st *ledger.Store, final []*candidate, etags map[string]string, rep *Report) ([]*candidate, error) {
	after, err := readWorld(ctx, st, final)
	if err != nil {
		return nil, err
	}
	var withdrawn []string
	kept := final[:0:0]
	for _, c := range final {
		if why, who := needed(after, c); why != "" {
			rep.skip(Skip{PhotoID: who, OldKey: c.key, Kind: KeptRaced, Reason: why + " (seen after the delete was claimed)"})
			withdrawn = append(withdrawn, c.key)
			delete(etags, c.key)
			continue
		}
		kept = append(kept, c)
	}
	if err := st.CleanupClearIntent(ctx, withdrawn); err != nil {
		return nil, err
	}
	return kept, nil
}

// deleteClaimed deletes the claimed legacy objects, each conditional on the
// ETag it was checked with, and records the outcome: deleted (or already
// gone) is recorded as deleted; a refused or failed delete withdraws its
// intent and keeps the object.
func deleteClaimed(ctx context.Context, st *ledger.Store, objects *objstore.Store, o Options, final []*candidate, etags map[string]string, rep *Report) error {
	failed, err := objects.DeleteBatchIf(ctx, etags, o.Concurrency)
	if err != nil {
		return err
	}
	if o.hooks.afterDelete != nil {
		if err := o.hooks.afterDelete(ctx, candidateKeys(final)); err != nil {
			return err
		}
	}
	var done, notDeleted []string
	for _, c := range final {
		// An object already gone is as deleted as cleanup would leave it.
		if f, bad := failed[c.key]; bad && f.Reason != objstore.DeleteNotFound {
			rep.skip(Skip{OldKey: c.key, Kind: KeptNotDeleted, Reason: "not deleted: " + f.String()})
			notDeleted = append(notDeleted, c.key)
			continue
		}
		done = append(done, c.key)
	}
	if err := st.CleanupClearIntent(ctx, notDeleted); err != nil {
		return err
	}
	if err := st.CleanupMarkDeleted(ctx, done); err != nil {
		return err
	}
	for _, c := range final {
		if !contains(notDeleted, c.key) {
			rep.deleted(c.key, c.size)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// movers are the photos whose committed moves of c cleanup relies on.
func movers(c *candidate) []string {
	var ids []string
	for _, m := range c.moves {
		if m.Committed() {
			ids = append(ids, m.PhotoID)
		}
	}
	return ids
}

func candidateKeys(cs []*candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.key
	}
	return out
}

// world is what the rows and the ledger say about a batch's jobs.
type world struct {
	// legacyRows are the rows (any status) referencing a legacy key of each job.
	legacyRows map[string][]ledger.Photo
	// jobPhotos are the photos the ledger ties to each job.
	jobPhotos map[string][]ledger.JobPhoto
	// rows are the current rows of every photo involved (absent: deleted).
	rows map[string]ledger.Photo
	// inventory are the copies the S3 Inventory report lists (nil without
	// one), and report the report.
	inventory map[string]ledger.InventoryObject
	report    *ledger.InventoryReport
}

// liveCopies are the copies of c that check relies on: committed, not
// superseded or rolled back, of photos whose rows exist.
func liveCopies(w world, c *candidate) []ledger.ObjectMove {
	var out []ledger.ObjectMove
	for _, m := range c.moves {
		if _, live := w.rows[m.PhotoID]; live && m.Committed() && !m.Superseded && m.NewDeletedAt == nil {
			out = append(out, m)
		}
	}
	return out
}

// lookUpCopies reads the report's entries for the page's copies: one
// statement per page.
func lookUpCopies(ctx context.Context, st *ledger.Store, r *ledger.InventoryReport, w world, cands []*candidate) (map[string]ledger.InventoryObject, error) {
	if r == nil {
		return nil, nil
	}
	var keys []string
	for _, c := range cands {
		for _, m := range liveCopies(w, c) {
			keys = append(keys, m.NewKey)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return st.InventoryGetMany(ctx, *r, keys)
}

// vouched reports whether the inventory report vouches for copy m: it lists
// the key with the size and ETag keymigrate's write returned, and the ledger
// says the copy was written and committed before the report's date (so the
// report saw keymigrate's copy, not an earlier object, and nothing the
// ledger knows of changed it since).
func vouched(w world, m ledger.ObjectMove) bool {
	if w.report == nil || m.ETag == "" || m.CopiedAt == nil || m.CommittedAt == nil {
		return false
	}
	o, ok := w.inventory[m.NewKey]
	at := w.report.CreatedAt
	return ok && o.Size == m.Size && o.ETag == m.ETag && !m.CopiedAt.After(at) && !m.CommittedAt.After(at) &&
		(o.LastModified.IsZero() || !o.LastModified.After(at))
}

func readWorld(ctx context.Context, st *ledger.Store, cands []*candidate) (world, error) {
	jobSet := map[string]bool{}
	ids := map[string]bool{}
	for _, c := range cands {
		jobSet[c.job] = true
		for _, m := range c.moves {
			ids[m.PhotoID] = true
		}
	}
	jobs := setList(jobSet)
	var w world
	var err error
	if w.legacyRows, err = st.PhotoListUsingJobs(ctx, jobs); err != nil {
		return w, err
	}
	if w.jobPhotos, err = st.PhotoMoveListOfJobs(ctx, jobs); err != nil {
		return w, err
	}
	for _, ps := range w.jobPhotos {
		for _, p := range ps {
			ids[p.PhotoID] = true
		}
	}
	w.rows, err = st.PhotoGetMany(ctx, setList(ids))
	return w, err
}

func setList(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// recordDeletedPhotos marks photos the ledger knows whose rows are gone.
func recordDeletedPhotos(ctx context.Context, st *ledger.Store, w world, rep *Report) error {
	seen := map[string]bool{}
	for _, ps := range w.jobPhotos {
		for _, p := range ps {
			if _, live := w.rows[p.PhotoID]; live || seen[p.PhotoID] {
				continue
			}
			seen[p.PhotoID] = true
			if p.State == ledger.StateDeleted {
				continue
			}
			if err := st.PhotoMoveMarkDeleted(ctx, p.PhotoID); err != nil {
				return err
			}
			rep.deletedPhoto(p.PhotoID)
		}
	}
	return nil
}

// needed says why the rows still need c's legacy object ("" if none), and
// which photo: a row that references a legacy key of its job, or a live photo
// of the job without a committed move of this very object.
func needed(w world, c *candidate) (why, photo string) {
	for _, p := range w.legacyRows[c.job] {
		state := "pending"
		if p.Status != nil {
			state = *p.Status
		}
		return fmt.Sprintf("photo %s (status %s) still references legacy keys of job %s", p.ID, state, c.job), p.ID
	}
	moved := map[string]bool{}
	for _, m := range c.moves {
		if m.Committed() {
			moved[m.PhotoID] = true
		}
	}
	for _, p := range w.jobPhotos[c.job] {
		if _, live := w.rows[p.PhotoID]; !live {
			continue // deleted by the application: needs nothing
		}
		if !moved[p.PhotoID] {
			return fmt.Sprintf("photo %s of job %s (%s) has no copy of its own of this object", p.PhotoID, c.job, p.State), p.PhotoID
		}
	}
	return "", ""
}

// check decides one legacy object: needed by no row, every copy past the
// grace period and intact, the legacy object unchanged since it was copied.
// Its HEADs (each live copy, and the legacy object) go out at once, each
// taking a place in sem.
func check(ctx context.Context, objects *objstore.Store, sem chan struct{}, o Options, w world, c *candidate, rep *Report) error {
	keep := func(photo, kind, why string) { rep.skip(Skip{PhotoID: photo, OldKey: c.key, Kind: kind, Reason: why}) }
	if why, who := needed(w, c); why != "" {
		keep(who, KeptStillNeeded, why)
		return nil
	}
	var sources []string
	var copies []ledger.ObjectMove
	for _, m := range c.moves {
		if !m.Committed() || m.Superseded || m.NewDeletedAt != nil {
			continue
		}
		if m.CommittedAt != nil && time.Since(*m.CommittedAt) < o.Grace {
			keep(m.PhotoID, KeptInGrace, fmt.Sprintf("its move to %s committed %s ago, inside the grace period", m.NewKey, time.Since(*m.CommittedAt).Round(time.Second)))
			return nil
		}
		sources = append(sources, m.SourceETag)
	}
	for _, m := range liveCopies(w, c) { // a deleted photo's copies went with it
		if vouched(w, m) {
			rep.vouched()
			continue
		}
		copies = append(copies, m)
	}
	rep.headed(len(copies))
	if len(sources) == 0 {
		keep("", KeptNoCopy, "no committed copy of it to rely on")
		return nil
	}
	heads := make([]headResult, len(copies)+1)
	var g errgroup.Group
	for i, m := range copies {
		g.Go(func() error { heads[i] = head(ctx, objects, sem, m.NewKey); return nil })
	}
	g.Go(func() error { heads[len(copies)] = head(ctx, objects, sem, c.key); return nil })
	_ = g.Wait()
	for i, m := range copies {
		dst, err := heads[i].info, heads[i].err
		if errors.Is(err, objstore.ErrNotFound) {
			keep(m.PhotoID, KeptCopyMissing, fmt.Sprintf("the new copy %s is missing (deleted by the application, or lost): the legacy object is its only copy", m.NewKey))
			return nil
		}
		if err != nil {
			return err
		}
		if ok, why := objstore.MatchesRecord(dst, objstore.Record{Size: m.Size, ETag: m.ETag, Algorithm: m.ChecksumAlgorithm, Checksum: m.Checksum}); !ok {
			keep(m.PhotoID, KeptCopyRewritten, fmt.Sprintf("the new copy %s is not the verified copy any more (%s)", m.NewKey, why))
			return nil
		}
	}
	src, err := heads[len(copies)].info, heads[len(copies)].err
	if errors.Is(err, objstore.ErrNotFound) {
		keep("", KeptLegacyGone, "the legacy object is already gone")
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range sources {
		if e != "" && e != src.ETag {
			keep("", KeptLegacyChanged, fmt.Sprintf("the legacy object changed after it was moved (ETag %s, copied from %s): migrate it again", src.ETag, e))
			return nil
		}
	}
	c.etag, c.size, c.ok = src.ETag, src.Size, true
	return nil
}

type headResult struct {
	info objstore.Info
	err  error
}

// head reads one object, holding a place in sem while the request is out.
func head(ctx context.Context, objects *objstore.Store, sem chan struct{}, key string) headResult {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return headResult{err: ctx.Err()}
	}
	defer func() { <-sem }()
	info, err := objects.Head(ctx, key)
	return headResult{info: info, err: err}
}
