package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// The phases of a shard, in order: the committed moves (by new key), the
// photos rows (by id), the legacy prefixes (by key range).
const (
	phaseObjects = "objects"
	phaseRows    = "rows"
	phaseLegacy  = "legacy"
)

func phaseIndex(p string) int {
	switch p {
	case phaseRows:
		return 1
	case phaseLegacy:
		return 2
	}
	return 0
}

// position is a shard's place in its pass, kept as the cursor of its row in
// keymigrate.pass_cursors: the phase, the last key the phase finished, and
// for the legacy phase (whose key ranges are listed in parallel) the last
// key finished in each of the shard's ranges and the ranges finished.
type position struct {
	Phase string         `json:"phase"`
	After string         `json:"after,omitempty"`
	Lists map[int]string `json:"lists,omitempty"`
	Done  map[int]bool   `json:"done,omitempty"`
}

// ranges are the key ranges of a pass's shards, fixed by its first shard:
// the inner bounds of the committed moves' new keys and of photos.id.
type ranges struct {
	Objects []string `json:"objects"`
	Photos  []string `json:"photos"`
}

// keyRange returns shard i's range of bounds: [lower, upper), an empty
// bound being open. A shard whose upper bound is "" without being the last
// one has an empty range (the table was empty when the ranges were fixed,
// and the last shard takes every row).
func keyRange(bounds []string, i int) (lower, upper string, empty bool) {
	if len(bounds) == 0 {
		return "", "", false
	}
	lower, upper = ledger.ShardRange(bounds, i)
	return lower, upper, i < len(bounds) && upper == ""
}

// pass is one shard's run.
type pass struct {
	store   *ledger.Store
	objects *objstore.Store
	o       Options
	r       *Report
	ranges  ranges
	checked atomic.Int64

	mu     sync.Mutex // guards r (merging), pos and the cursor row
	pos    position
	cursor ledger.PassCursor
}

// Scope names a pass by what it checks: a rerun with other options starts a
// pass of its own, and never mixes its tallies with this one's.
func Scope(o Options) string {
	inv := int64(0)
	if o.Inventory != nil {
		inv = o.Inventory.ID
	}
	return fmt.Sprintf("run=%s deep=%t inventory=%d requeue=%t repair=%t", o.RunID, o.Deep, inv, o.Requeue != nil, o.Requeue != nil && o.Repair)
}

// join reads (or creates) the shard's cursor and its tally, and takes the
// shard's lease (held until the returned lease is released; the context is
// cancelled if it is lost). p.r.AlreadyDone reports a shard that had
// finished.
//
// A finished shard of a pass that is not complete is not checked again. A
// complete unsharded pass is started over by the next run (verify after a
// fix checks again). A complete sharded pass stands until --restart: a shard
// run again after the pass completed is a retried pod of an Indexed Job (or
// a process killed after its shard finished), and starting a new pass there
// would leave a pass of one shard, its verdict missing every other (found by
// TestVerifyKilledAtRandomPointsResumesToTheSameVerdict in CI).
func (p *pass) join(ctx context.Context) (context.Context, *ledger.PassLease, error) {
	cs, err := p.store.PassCursorList(ctx, ledger.PassVerify, Scope(p.o), p.o.Shards)
	if err != nil {
		return ctx, nil, err
	}
	if p.o.Shards <= 1 && complete(cs, p.o.Shards) {
		if err := p.store.PassCursorReset(ctx, ledger.PassVerify, Scope(p.o), p.o.Shards); err != nil {
			return ctx, nil, err
		}
	}
	c, err := p.store.PassCursorJoin(ctx, ledger.PassVerify, Scope(p.o), p.o.Shard, p.o.Shards)
	if err != nil {
		return ctx, nil, err
	}
	ctx, lease, err := p.store.PassLeaseHold(ctx, c, p.o.Holder, p.o.LeaseTTL)
	if err != nil {
		return ctx, nil, err
	}
	// From here the cursor moves only while this process holds the lease:
	// a process that lost it, or one whose pass was forgotten and started
	// again (--restart) by another, is refused (ledger.ErrLeaseLost).
	c.Holder = p.o.Holder
	p.cursor = c
	p.r.TookOverFrom = lease.Previous
	if err := p.resume(c); err != nil {
		lease.Release()
		return ctx, nil, err
	}
	return ctx, lease, nil
}

// resume loads the shard's tally and place from its cursor row.
func (p *pass) resume(c ledger.PassCursor) error {
	if len(c.Tally) > 0 && string(c.Tally) != "{}" {
		if err := json.Unmarshal(c.Tally, p.r); err != nil {
			return fmt.Errorf("read the tally of verify shard %d/%d: %w", c.Shard, c.Shards, err)
		}
		p.r.Resumed = true
		if p.r.ProblemsByKind == nil {
			p.r.ProblemsByKind = map[string]int64{}
		}
	}
	if c.Cursor != "" {
		if err := json.Unmarshal([]byte(c.Cursor), &p.pos); err != nil {
			return fmt.Errorf("read the cursor of verify shard %d/%d: %w", c.Shard, c.Shards, err)
		}
	}
	p.r.AlreadyDone = c.Done()
	return nil
}

// complete reports whether every shard of a pass of n finished.
func complete(cs []ledger.PassCursor, n int) bool {
	done := 0
	for _, c := range cs {
		if c.Done() {
			done++
		}
	}
	return done == n
}

// fixRanges reads the pass's key ranges, fixing them first if this is its
// first shard to start.
func (p *pass) fixRanges(ctx context.Context) error {
	if p.o.Shards == 1 || p.o.RunID != "" {
		// A pass over a run splits its photos by a hash of their id: no
		// ranges to fix (ledger/runshards.go says why).
		return nil
	}
	compute := func(ctx context.Context) (any, error) {
		var rg ranges
		var err error
		if rg.Objects, err = p.store.ObjectMoveShardBounds(ctx, p.o.Shards); err != nil {
			return nil, err
		}
		rg.Photos, err = p.store.PhotoShardBounds(ctx, p.o.Shards)
		if errors.Is(err, ledger.ErrNoPhotos) {
			rg.Photos, err = make([]string, p.o.Shards-1), nil
		}
		return rg, err
	}
	b, err := p.store.PassBoundsFix(ctx, ledger.PassVerify, Scope(p.o), p.o.Shards, compute)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, &p.ranges)
}

// save merges a page's report into the shard's, moves the position on
// (update), and records both in one statement: a kill after it resumes after
// the page, a kill before it redoes the page, and the tally counts every page
// exactly once. The page's photos to requeue are sent first.
func (p *pass) save(ctx context.Context, d *Report, update func(*position)) error {
	if h := p.o.hooks.beforeSave; h != nil {
		p.mu.Lock()
		phase := p.pos.Phase
		p.mu.Unlock()
		if err := h(ctx, phase); err != nil {
			return err
		}
	}
	if err := p.send(ctx, d); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.r.merge(d)
	update(&p.pos)
	if !p.o.Resume {
		return nil
	}
	cur, err := json.Marshal(p.pos)
	if err != nil {
		return fmt.Errorf("encode the cursor of verify shard %d/%d: %w", p.o.Shard, p.o.Shards, err)
	}
	return p.store.PassCursorAdvance(ctx, p.cursor, string(cur), p.r)
}

// send gives a page's photos to the requeue hook.
func (p *pass) send(ctx context.Context, d *Report) error {
	if p.o.Requeue == nil {
		return nil
	}
	if len(d.Requeue) > 0 {
		if err := p.o.Requeue(ctx, d.Requeue, false); err != nil {
			return err
		}
	}
	if p.o.Repair && len(d.Repair) > 0 {
		return p.o.Requeue(ctx, d.Repair, true)
	}
	return nil
}

// page returns an empty report for one page of work.
func (p *pass) page() *Report { return newReport(p.o.MaxProblems) }

func (p *pass) tick() {
	if n := p.checked.Add(1); p.o.Progress != nil && n%200 == 0 {
		p.o.Progress(n)
	}
}

// ResetPass forgets the cursors, tallies and key ranges of the pass the
// options name (all its shards), so its next run checks everything again.
func ResetPass(ctx context.Context, store *ledger.Store, o Options) error {
	o, err := o.normalize()
	if err != nil {
		return err
	}
	return store.PassCursorReset(ctx, ledger.PassVerify, Scope(o), o.Shards)
}

// ShardState is one shard of a pass as the ledger records it.
type ShardState struct {
	Shard    int
	Started  bool
	Done     bool
	Phase    string
	Report   *Report
	Progress string
	// Lease is who runs the shard and when its lease lapses (an unfinished
	// shard nobody holds stopped: its next run continues it).
	Lease ledger.PassLeaseState
}

// Union reads every shard of the pass the options name and returns the
// union of their tallies (Shard -1), with the state of each shard. It
// returns ErrNotDone, with the union so far, while a shard is missing or
// unfinished: the verdict is the union of all shards, never of some.
func Union(ctx context.Context, store *ledger.Store, o Options) (*Report, []ShardState, error) {
	o, err := o.normalize()
	if err != nil {
		return nil, nil, err
	}
	cs, err := store.PassCursorList(ctx, ledger.PassVerify, Scope(o), o.Shards)
	if err != nil {
		return nil, nil, err
	}
	u := newReport(o.MaxProblems)
	u.RunID, u.Shard, u.Shards, u.LegacyListed = o.RunID, -1, o.Shards, o.RunID == ""
	states := make([]ShardState, o.Shards)
	for i := range states {
		states[i].Shard = i
	}
	for _, c := range cs {
		r := newReport(o.MaxProblems)
		if err := json.Unmarshal(c.Tally, r); err != nil {
			return nil, nil, fmt.Errorf("read the tally of verify shard %d/%d: %w", c.Shard, c.Shards, err)
		}
		var pos position
		if c.Cursor != "" {
			_ = json.Unmarshal([]byte(c.Cursor), &pos)
		}
		states[c.Shard] = ShardState{Shard: c.Shard, Started: true, Done: c.Done(), Phase: pos.Phase, Report: r, Lease: c.Lease}
		u.merge(r)
	}
	for _, s := range states {
		if !s.Done {
			return u, states, ErrNotDone
		}
	}
	sort.Strings(u.Requeue)
	return u, states, nil
}

// settlePurged settles the page's problems held by addUnlessPurged, once its
// checks are done: a legacy key `archived purge` recorded as deleted is
// purge's doing, counted (LegacyPurged for a move's legacy object,
// PurgedReferences for an archived row's reference); any other is reported.
// The ledger is asked about the page's gone keys only, by key (the purges'
// primary key; the moves' job index), and not at all when none is gone.
func (p *pass) settlePurged(ctx context.Context, d *Report) error {
	held := d.unlessPurged
	d.unlessPurged = nil
	if len(held) == 0 {
		return nil
	}
	keys := make([]string, 0, len(held))
	for _, pr := range held {
		keys = append(keys, pr.Key)
	}
	// What the ledger records of their deletion; only purge's counts here
	// (a deletion cleanup recorded is accounted for by the checks
	// themselves, on the move or the row's job).
	deletions, err := p.store.ObjectMoveLegacyDeletions(ctx, keys)
	if err != nil {
		return err
	}
	for _, pr := range held {
		switch {
		case deletions[pr.Key].PurgedAt == nil:
			d.add(pr)
		case pr.Kind == LegacyObjectMissing:
			d.LegacyPurged++
		default:
			d.PurgedReferences++
		}
	}
	return nil
}
