package soak

import (
	"context"
	"fmt"
	"time"

	"github.com/keymigrate/keymigrate/internal/harness/appsim"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

// transientMargin is how many deliveries a transient failure must leave
// before the queue's maxReceiveCount for the failure history to accept it:
// a photo that failed transiently on delivery maxReceiveCount-1 was one
// fault away from a false dead letter (the worker dead-letters the last
// delivery as retries_exhausted), so the bound is
// receive_count <= maxReceiveCount - transientMargin (3 with the soak's
// maxReceiveCount of 5). Outages do not spend receives (the worker hands the
// message back as a fresh one), and a per-request fault is retried inside the
// attempt (--retry-max-elapsed), so only a run of bad luck or a killed
// worker's lost deliveries reach the bound.
const transientMargin = 2

// dlqEntry is one message seen in the DLQ before a redrive.
type dlqEntry struct {
	at       time.Time
	when     string // "before the redrive at +1m02s"
	photoID  string
	msgID    string
	reason   string
	receives int
}

// snapshotDLQ receives every message in the DLQ with a short visibility and
// hands each back, returning what it saw (each message once).
func (r *Runner) snapshotDLQ(ctx context.Context, when string) []dlqEntry {
	seen := map[string]bool{}
	var receipts []string
	defer func() {
		for _, h := range receipts {
			_ = r.env.DLQ.ChangeVisibility(context.WithoutCancel(ctx), h, 0)
		}
	}()
	var out []dlqEntry
	for range 1000 {
		msgs, err := r.env.DLQ.Receive(ctx, 10, time.Second, 2*time.Minute)
		if err != nil {
			r.note("read the DLQ %s: %v", when, err)
			break
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			receipts = append(receipts, m.ReceiptHandle)
			if seen[m.ID] {
				continue
			}
			seen[m.ID] = true
			e := dlqEntry{at: time.Now(), when: when, photoID: m.Body, msgID: m.ID, reason: m.Attributes[queue.AttrReason], receives: m.ReceiveCount}
			if msg, err := queue.Decode(m.Body); err == nil {
				e.photoID = msg.PhotoID
			}
			out = append(out, e)
		}
	}
	return out
}

// recordBeforeRedrive keeps what is in the DLQ and the failure log just
// before a mid-run redrive moves the messages back; the finish judges them
// (with the model as it then is: a photo the application deleted after its
// failure is explained by that deletion).
func (r *Runner) recordBeforeRedrive(ctx context.Context) {
	when := fmt.Sprintf("before the redrive at +%s", time.Since(r.t0).Round(time.Second))
	entries := r.snapshotDLQ(ctx, when)
	rows, err := r.failureLog(ctx)
	if err != nil {
		r.note("read the failure log %s: %v", when, err)
	}
	r.mu.Lock()
	r.dlqSeen = append(r.dlqSeen, entries...)
	r.mu.Unlock()
	r.logf("soak: %s: %d messages in the DLQ, %d rows in the failure log", when, len(entries), len(rows))
}

// failureLog reads the whole failure log through the ledger.
func (r *Runner) failureLog(ctx context.Context) ([]ledger.FailureEntry, error) {
	var all []ledger.FailureEntry
	var after int64
	for {
		page, err := r.env.Store.FailureListSince(ctx, after, 1000)
		if err != nil {
			return all, err
		}
		all = append(all, page...)
		if len(page) < 1000 {
			return all, nil
		}
		after = page[len(page)-1].ID
	}
}

// explained says whether a failure of photo id with reason (permanent or
// not, on delivery receives) is one the run caused on purpose, or "" and
// why not.
func (r *Runner) explained(id, reason string, permanent bool, receives, maxReceive int) string {
	st, ok := r.sim.Model().State(id)
	switch {
	case id == "":
		return "a failure that names no photo (the soak sends no malformed message)"
	case !ok:
		return "a failure of a photo the application never had"
	case st.Deleted:
		return "" // the application deleted it: any failure is explained
	case permanent && reason == st.Expect:
		return ""
	case permanent && st.Expect != "":
		return fmt.Sprintf("broken on purpose as %s, but failed permanently as %s", st.Expect, reason)
	case permanent:
		return fmt.Sprintf("failed permanently as %s, but the photo is sound (%s)", reason, st.Describe())
	case maxReceive > 0 && receives > maxReceive-transientMargin:
		return fmt.Sprintf("failed transiently (%s) on delivery %d of at most %d: within %d deliveries of a false dead letter", reason, receives, maxReceive, transientMargin-1)
	}
	return ""
}

// checkFailureHistory: every row of the failure log, redriven or not, and
// every message seen in the DLQ before a redrive, belongs to a photo broken
// on purpose or deleted by the application, or is transient with a receive
// count at most maxReceiveCount - transientMargin.
func (r *Runner) checkFailureHistory(ctx context.Context, rep *Report) error {
	maxReceive, err := r.env.Queue.MaxReceiveCount(ctx)
	if err != nil {
		return err
	}
	rows, err := r.failureLog(ctx)
	if err != nil {
		return err
	}
	rep.FailureLog = map[string]int{}
	for _, f := range rows {
		kind := "transient"
		if f.Permanent {
			kind = "permanent"
		}
		rep.FailureLog[kind+" "+f.Reason]++
		why := r.explained(f.PhotoID, f.Reason, f.Permanent, f.ReceiveCount, maxReceive)
		if why == "" {
			continue
		}
		redriven := ""
		if f.Redriven {
			redriven = ", since redriven"
		}
		r.violate(Violation{Invariant: InvFailureHistory, PhotoID: f.PhotoID,
			Detail: fmt.Sprintf("failure log #%d at %s%s: %s; error: %s", f.ID, f.At.Format("15:04:05.000"), redriven, why, f.Error)})
	}
	r.mu.Lock()
	seen := append([]dlqEntry(nil), r.dlqSeen...)
	r.mu.Unlock()
	for _, e := range seen {
		rep.DLQSeen++
		reason := e.reason
		if reason == "" {
			r.violate(Violation{Invariant: InvFailureHistory, PhotoID: e.photoID, Detail: fmt.Sprintf("in the DLQ %s without a reason after %d receives: the queue's redrive policy moved it (retries_exhausted)", e.when, e.receives)})
			continue
		}
		if why := r.explained(e.photoID, reason, true, e.receives, maxReceive); why != "" {
			r.violate(Violation{Invariant: InvFailureHistory, PhotoID: e.photoID, Detail: fmt.Sprintf("in the DLQ %s (message %s): %s", e.when, e.msgID, why)})
		}
	}
	return nil
}

// checkSettled runs at the first full drain, before the operator's finishing
// `producer --new-run` could heal anything: every photo the runs enqueued
// is migrated, archived, failed as the run broke it, rolled back or deleted
// by the application, and every legacy row the application had before the
// latest producer run whose scan completed began was enqueued
// (scanCoveredBefore). A message a worker lost, or a row a producer skipped,
// is still visible here.
func (r *Runner) checkSettled(ctx context.Context) error {
	runs, err := r.env.Store.RunList(ctx)
	if err != nil {
		return err
	}
	covered := scanCoveredBefore(runs)
	reasons := map[string]string{} // photo → its latest permanent failure
	rows, err := r.failureLog(ctx)
	if err != nil {
		return err
	}
	for _, f := range rows {
		if f.Permanent {
			reasons[f.PhotoID] = f.Reason
		}
	}
	var legacy []ledger.Photo
	after := ""
	for {
		page, err := r.env.Store.PhotoScanLegacy(ctx, after, 1000)
		if err != nil {
			return err
		}
		legacy = append(legacy, page...)
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	ids := make([]string, 0, len(legacy))
	for _, p := range legacy {
		ids = append(ids, p.ID)
	}
	states, err := r.env.Store.PhotoMoveStates(ctx, "", ids)
	if err != nil {
		return err
	}
	settled := 0
	for _, p := range legacy {
		st, ok := r.sim.Model().State(p.ID)
		if !ok || st.Deleted || st.Owner == nil {
			continue // rows_match_model and end_state judge these
		}
		state, has := states[p.ID]
		why := ""
		switch {
		case !has && createdAfter(st, covered):
			settled++ // inserted after the latest complete scan began: the finishing run takes it
		case !has:
			why = fmt.Sprintf("legacy, and no producer run enqueued it (the last whose scan completed began at %s): a skipped row", covered.Format("15:04:05.000"))
		case state == ledger.StateRolledBack || state == ledger.StateDeleted:
			settled++
		case state == ledger.StateFailed && st.Expect != "" && reasons[p.ID] == st.Expect:
			settled++
		case state == ledger.StateFailed:
			why = fmt.Sprintf("failed as %q; the run broke it as %q", reasons[p.ID], st.Expect)
		case state.Open():
			why = fmt.Sprintf("%s with an empty queue and an idle fleet: its message was lost", state)
		default:
			why = fmt.Sprintf("the ledger says %s, but the row still holds %s", state, legacyKeyOf(p))
		}
		if why != "" {
			r.violate(Violation{Invariant: InvSettled, PhotoID: p.ID, Detail: why + "; " + st.Describe()})
		}
	}
	r.logf("soak: before the finishing producer run: %d legacy rows, %d accounted for", len(legacy), settled)
	// A message lost and healed by a scheduled producer run before now
	// shows only in the ledger's history (lost.go).
	return r.checkLostMessages(ctx)
}

// scanCoveredBefore is when the latest producer run whose scan completed
// (finished_at set, by whichever invocation finished it) began: every legacy
// row the application had then was read by that scan, so it was enqueued.
// Neither the start of an invocation that died before its run's scan ended
// (killed, or refused by a Postgres outage before it read a row) nor that of
// a resumed invocation covers anything more: a resumed scan continues from
// its checkpoint, past the rows created behind it since the run began. The
// soak used to take the last invocation's start, so one that could not even
// connect made every row created since the last complete scan a "skipped
// row" (F19 in docs/soak-findings.md). The zero time when no producer run has
// finished its scan: then nothing is judged.
func scanCoveredBefore(runs []ledger.Run) time.Time {
	var t time.Time
	for _, r := range runs {
		if r.Kind == ledger.RunProducer && r.FinishedAt != nil && r.StartedAt.After(t) {
			t = r.StartedAt
		}
	}
	return t
}

// createdAfter says whether the application inserted the photo after t (a
// late legacy row or a duplicate); seeded rows are older than any run.
func createdAfter(st appsim.PhotoState, t time.Time) bool {
	if st.Origin == appsim.OriginSeeded || st.Origin == appsim.OriginProblem {
		return false
	}
	return !st.Added.Before(t)
}

func legacyKeyOf(p ledger.Photo) string {
	for _, k := range []*string{&p.Original, p.Processed, p.Thumbnail} {
		if k != nil && !keylayout.IsUserScoped(*k) {
			return *k
		}
	}
	return p.Original
}
