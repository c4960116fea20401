// Package status computes the migration's progress from the ledger, the photos
// table and the queues: counts by state, queue depths, recent rate and an ETA.
package status

import (
	"context"
	"encoding/json"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// Pending is the row of Status.States that is not a ledger state: the
// legacy photos the ledger has not seen yet (from the census).
const Pending = "pending"

// States lists the ledger states in the order they are shown. Pending is not
// a ledger state: it counts legacy photos the ledger has not seen yet.
var States = func() []string {
	out := []string{Pending}
	for _, st := range ledger.States() {
		out = append(out, string(st))
	}
	return out
}()

// Status is one snapshot.
type Status struct {
	At     time.Time        `json:"at"`
	States map[string]int64 `json:"states"`
	// Total is every photo the migration is about: all the ledger knows plus
	// the pending ones. Done are those in a final state (migrated, archived,
	// cleaned) and Failed those waiting for an operator.
	Total  int64 `json:"total"`
	Done   int64 `json:"done"`
	Failed int64 `json:"failed"`
	// Legacy counts rows that still reference a legacy key (archived aside):
	// the pending ones and those the ledger has not moved yet.
	Legacy int64 `json:"legacy_rows"`
	// Census is the count pending photos are derived from (nil: none taken
	// yet, and pending is unknown: `migratectl status --census` takes one).
	Census *ledger.Census `json:"census,omitempty"`
	Queue  *queue.Depth   `json:"queue,omitempty"`
	DLQ    *queue.Depth   `json:"dlq,omitempty"`
	// QueueError and DLQError say why a queue's figures are missing: status
	// still shows the ledger's view when SQS is unreachable.
	QueueError string `json:"queue_error,omitempty"`
	DLQError   string `json:"dlq_error,omitempty"`
	// Open counts photos the ledger has enqueued or in progress; Held those
	// in progress in a live worker's hands; Unaccounted those the queue
	// cannot be holding a message for (Open minus Held minus the queue's
	// messages, when positive): lost messages, which the workers' sweeper
	// enqueues again once the queue stays empty. Stuck counts photos the
	// sweeper gave up on (their message keeps getting lost).
	Open        int64 `json:"open"`
	Held        int64 `json:"held"`
	Unaccounted int64 `json:"unaccounted"`
	Stuck       int64 `json:"stuck"`
	// UnfinishedRuns are producer runs that have not finished: one that
	// failed (an outage) may have recorded photos as enqueued without
	// sending their messages; rerunning it (producer --run-id) sends them.
	UnfinishedRuns []string `json:"unfinished_runs,omitempty"`
	// NotCarried counts moved objects whose source carried something the
	// copy could not (Object Lock retention, a legal hold, ACL grants): the
	// ledger's object_moves.not_carried says what, per object.
	NotCarried int64 `json:"not_carried"`
	// SinceProgress is how long ago a photo last finished (-1: never).
	SinceProgress time.Duration `json:"since_progress_ns"`
	// Rate is photos finished per second over Window.
	Rate   float64       `json:"rate_per_second"`
	Window time.Duration `json:"window_ns"`
	// ETA is the time left at Rate; zero when done, -1 when unknown.
	ETA time.Duration `json:"eta_ns"`
	// Control is the fleet's pause and throttle state; Workers the workers
	// seen in the last few seconds.
	Control ledger.Control      `json:"control"`
	Workers []ledger.WorkerBeat `json:"workers"`
	// Run is the run the snapshot is scoped to (Source.RunID), if any: its
	// counts are then those of the photos the ledger attributes to it, and
	// the queue depths are still the whole queue's.
	Run *RunInfo `json:"run,omitempty"`
	// Verify is the progress of the verify passes the ledger keeps cursors
	// for (keymigrate.pass_cursors: a few rows per pass), newest first.
	Verify []VerifyShard `json:"verify,omitempty"`
}

// VerifyShard is one shard of a verify pass, as its cursor row records it.
type VerifyShard struct {
	Scope  string `json:"scope"`
	Shard  int    `json:"shard"`
	Shards int    `json:"shards"`
	// Phase is where the shard is: objects, rows or legacy ("" before its
	// first page); Done whether it finished.
	Phase     string    `json:"phase"`
	Done      bool      `json:"done"`
	UpdatedAt time.Time `json:"updated_at"`
	// Lease is who runs the shard and when its lease lapses (an unfinished
	// shard nobody holds stopped: its next run continues it).
	Lease ledger.PassLeaseState `json:"lease"`
	// The shard's tally so far.
	Rows     int64 `json:"rows_checked"`
	Objects  int64 `json:"objects_checked"`
	Listed   int64 `json:"legacy_objects_listed"`
	Problems int64 `json:"problem_count"`
}

// verifyShards reads the verify passes' cursors.
func verifyShards(ctx context.Context, st *ledger.Store) ([]VerifyShard, error) {
	cs, err := st.PassCursorListAll(ctx, ledger.PassVerify)
	if err != nil {
		return nil, err
	}
	out := make([]VerifyShard, 0, len(cs))
	for _, c := range cs {
		v := VerifyShard{Scope: c.Scope, Shard: c.Shard, Shards: c.Shards, Done: c.Done(), UpdatedAt: c.UpdatedAt, Lease: c.Lease}
		// The tally and the cursor are verify's JSON; status reads the
		// few fields it shows and tolerates the rest.
		_ = json.Unmarshal(c.Tally, &v)
		var pos struct {
			Phase string `json:"phase"`
		}
		if c.Cursor != "" {
			_ = json.Unmarshal([]byte(c.Cursor), &pos)
		}
		v.Phase = pos.Phase
		out = append(out, v)
	}
	return out, nil
}

// RunInfo is the run a scoped snapshot is about.
type RunInfo struct {
	ID         string            `json:"run_id"`
	Kind       string            `json:"kind"`
	Selection  *ledger.Selection `json:"selection,omitempty"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt *time.Time        `json:"finished_at,omitempty"`
	Counts     ledger.RunCounts  `json:"counts"`
}

// Remaining is photos not yet in a final state.
func (s Status) Remaining() int64 { return s.Total - s.Done }

// Idle reports that nothing is left to do: no legacy photo waits to be
// enqueued and the main queue is empty. When the queue is not known, the
// ledger's enqueued and in-progress photos count instead (they can be stale:
// a photo whose message the redrive policy moved to the DLQ stays in
// progress).
func (s Status) Idle() bool {
	busy := s.States[Pending]
	if s.Queue != nil {
		busy += s.Queue.Total()
	} else {
		busy += s.States[string(ledger.StateEnqueued)] + s.States[string(ledger.StateInProgress)]
	}
	return busy == 0
}

// Source is what a snapshot reads.
type Source struct {
	Store *ledger.Store
	Queue *queue.Queue // optional
	DLQ   *queue.Queue // optional
	// RunID scopes the counts, the rate and the ETA to one run's photos
	// (optional). Pending is then 0: a run's photos are in the ledger from the
	// moment they are enqueued.
	RunID string
}

// liveWindow is how recently a worker must have beaten to count as alive.
const liveWindow = 10 * time.Second

// Take reads one snapshot; window is the span the rate is measured over. It
// reads the ledger's counters (ledger.CounterRead), never the ledger's rows,
// so a snapshot costs the same at any size and --watch can repeat it; the
// pending photos come from the last census (ledger.Census), which a full pass
// takes on demand (Census).
//
// Its phases, in the order they read: the run it is scoped to, the counters,
// the census, the fleet's control and workers, the unfinished runs and verify
// passes, and the queues last.
func Take(ctx context.Context, src Source, window time.Duration) (Status, error) {
	s := Status{At: time.Now(), States: map[string]int64{}, Window: window, ETA: -1}
	for _, st := range States {
		s.States[st] = 0
	}
	if err := s.readRun(ctx, src); err != nil {
		return s, err
	}
	c, err := readCounters(ctx, src, window)
	if err != nil {
		return s, err
	}
	s.countStates(c)
	if err := s.readPending(ctx, src, c); err != nil {
		return s, err
	}
	s.countTotals(c)
	s.estimate(c, window)
	if err := s.readFleet(ctx, src.Store); err != nil {
		return s, err
	}
	s.countOpen(c)
	if err := s.readPasses(ctx, src.Store); err != nil {
		return s, err
	}
	s.SinceProgress = -1
	if c.LastProgress != nil {
		s.SinceProgress = max(time.Since(*c.LastProgress), 0)
	}
	s.readQueues(ctx, src)
	return s, nil
}

// readRun describes the run the snapshot is scoped to, if any.
func (s *Status) readRun(ctx context.Context, src Source) error {
	if src.RunID == "" {
		return nil
	}
	run, err := src.Store.RunFind(ctx, src.RunID)
	if err != nil {
		return err
	}
	s.Run = &RunInfo{ID: run.ID, Kind: run.Kind, Selection: run.Selection, StartedAt: run.StartedAt, FinishedAt: run.FinishedAt, Counts: run.Counts}
	return nil
}

// readCounters reads the ledger's counters, scoped to src.RunID if set.
func readCounters(ctx context.Context, src Source, window time.Duration) (ledger.Counts, error) {
	// Fold the deltas written since the workers last did (usually a few
	// seconds' worth), so the snapshot reads few rows.
	if _, err := src.Store.CounterFold(ctx); err != nil {
		return ledger.Counts{}, err
	}
	return src.Store.CounterRead(ctx, src.RunID, window, liveWindow)
}

// countStates copies the counts by state, and adds up the done and failed.
func (s *Status) countStates(c ledger.Counts) {
	for st, n := range c.States {
		s.States[string(st)] = n
		switch {
		case st.Finished() || st == ledger.StateCleaned:
			s.Done += n
		case st == ledger.StateFailed:
			s.Failed += n
		}
	}
}

// readPending counts the pending photos: legacy rows the ledger has not
// recorded (not yet enqueued), from the census. A run's photos are all in
// the ledger.
func (s *Status) readPending(ctx context.Context, src Source, c ledger.Counts) error {
	if src.RunID != "" {
		return nil
	}
	census, ok, err := src.Store.CensusGet(ctx)
	if err != nil {
		return err
	}
	if ok {
		s.Census = &census
		s.States[Pending] = census.PendingNow(c.Rows)
	}
	return nil
}

// countTotals adds up the photos in scope and the rows that still reference
// legacy keys.
func (s *Status) countTotals(c ledger.Counts) {
	for _, n := range s.States {
		s.Total += n
	}
	// Rows that still reference legacy keys: pending ones, and those the
	// ledger has not moved or set aside yet.
	s.Legacy = s.States[Pending]
	for _, st := range []ledger.State{ledger.StateEnqueued, ledger.StateInProgress, ledger.StateFailed, ledger.StateRolledBack} {
		s.Legacy += c.States[st]
	}
}

// estimate measures the rate over window and the time left at that rate.
func (s *Status) estimate(c ledger.Counts, window time.Duration) {
	// The rate is measured over the window, or over the time since the first
	// photo in it finished if that is shorter, so that a run that started
	// seconds ago is not diluted over the whole window.
	if span := min(max(c.FinishedSpan.Seconds(), 1), window.Seconds()); window > 0 {
		s.Rate = float64(c.Finished) / span
	}
	switch left := s.Remaining() - s.Failed; {
	case left <= 0:
		s.ETA = 0
	case s.Rate > 0:
		s.ETA = time.Duration(float64(left) / s.Rate * float64(time.Second))
	}
}

// readFleet reads the fleet's control (pause, throttle) and its live workers.
func (s *Status) readFleet(ctx context.Context, st *ledger.Store) error {
	var err error
	if s.Control, err = st.ControlGet(ctx); err != nil {
		return err
	}
	if s.Workers, err = st.WorkerListLive(ctx, liveWindow); err != nil {
		return err
	}
	return nil
}

// countOpen copies the counts of photos the ledger waits on.
func (s *Status) countOpen(c ledger.Counts) {
	s.Open = c.States[ledger.StateEnqueued] + c.States[ledger.StateInProgress]
	s.Held, s.Stuck, s.NotCarried = c.Held, c.Stuck, c.NotCarried
}

// readPasses reads the producer runs that have not finished and the verify
// passes' shards.
func (s *Status) readPasses(ctx context.Context, st *ledger.Store) error {
	var err error
	if s.UnfinishedRuns, err = st.RunListUnfinishedProducer(ctx); err != nil {
		return err
	}
	if s.Verify, err = verifyShards(ctx, st); err != nil {
		return err
	}
	return nil
}

// readQueues reads the queues' depths. It is last, and a queue's failure is
// not the snapshot's: the ledger's view is worth showing when SQS is
// unreachable.
func (s *Status) readQueues(ctx context.Context, src Source) {
	if src.Queue != nil {
		if d, err := src.Queue.Depth(ctx); err != nil {
			s.QueueError = err.Error()
		} else {
			s.Queue = &d
			s.Unaccounted = max(s.Open-s.Held-d.Total(), 0)
		}
	}
	if src.DLQ != nil {
		if d, err := src.DLQ.Depth(ctx); err != nil {
			s.DLQError = err.Error()
		} else {
			s.DLQ = &d
		}
	}
}
