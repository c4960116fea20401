package soak

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

func TestPhotoHistoryCountsLostMessages(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	// Dropped, then healed by a rerun: two messages, one delivery.
	var h photoHistory
	h.add(ledgertest.LogRecord, "r1", 1, at(0))
	h.add(ledgertest.LogRecord, "r2", 1, at(30))
	h.add(ledgertest.LogDelivery, "r2", 1, at(31))
	require.Len(t, h.pending, 1)
	require.Equal(t, "r2", h.pending[0].run, "deliveries match the oldest message: the newest is the one left")
	require.Equal(t, 1, h.deliveries)

	// Waiting behind a backlog when the rerun came: both delivered.
	h = photoHistory{}
	h.add(ledgertest.LogRecord, "r1", 1, at(0))
	h.add(ledgertest.LogRecord, "r2", 1, at(30))
	h.add(ledgertest.LogDelivery, "r1", 1, at(40))
	h.add(ledgertest.LogDelivery, "r2", 1, at(41))
	require.Empty(t, h.pending)

	// A resumed run re-recording with no delivery in between: one message.
	h = photoHistory{}
	h.add(ledgertest.LogRecord, "r1", 1, at(0))
	h.add(ledgertest.LogRecord, "r1", 1, at(3))
	h.add(ledgertest.LogDelivery, "r1", 1, at(5))
	require.Empty(t, h.pending)
	require.Len(t, h.sends, 1)

	// A redrive is a message of its own; so is a rescue.
	h = photoHistory{}
	h.add(ledgertest.LogRecord, "r1", 1, at(0))
	h.add(ledgertest.LogDelivery, "r1", 1, at(1))
	h.add(ledgertest.LogRedrive, "r1", 1, at(20))
	h.add(ledgertest.LogRescue, "r1", 1, at(700))
	h.add(ledgertest.LogDelivery, "r1", 1, at(701))
	require.Len(t, h.pending, 1)
	require.True(t, h.rescuedAfter(at(20)))

	// An unmatched record of a run resumed later from a checkpoint before
	// the photo: possibly never sent.
	pending := []sent{{kind: ledgertest.LogRecord, run: "r2", at: at(30)}}
	require.True(t, unsent("p5", pending, []resumeNote{{run: "r2", checkpoint: "p3", at: at(40)}}))
	require.False(t, unsent("p5", pending, []resumeNote{{run: "r2", checkpoint: "p7", at: at(40)}}), "sent: the checkpoint passed it")
	require.False(t, unsent("p5", pending, []resumeNote{{run: "r2", checkpoint: "p3", at: at(20)}}), "recorded after the resume")
	require.False(t, unsent("p5", pending, []resumeNote{{run: "r1", checkpoint: "", at: at(40)}}), "another run's resume")
	require.False(t, unsent("p5", pending, nil))
}

// TestAuditLogsSendsAndDeliveries: the trigger sees the ledger's own
// statements as sends (a producer's record, a redrive, a rescue) and
// deliveries (an attempt begun), and nothing else as either.
func TestAuditLogsSendsAndDeliveries(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	r := &Runner{env: env}
	require.NoError(t, r.installAudit(ctx))
	st := env.Store
	owner := "7d4c1c52-0000-4000-8000-000000000001"
	p := ledger.Photo{ID: "11111111-0000-4000-8000-000000000001", OwnerID: &owner}
	ledgertest.RecordRuns(t, st, "r1", "r2")

	require.NoError(t, st.PhotoMoveRecordEnqueued(ctx, "r1", []ledger.Photo{p}))
	require.NoError(t, st.PhotoMoveRecordEnqueued(ctx, "r2", []ledger.Photo{p}))
	_, err := st.PhotoMoveBeginAttempt(ctx, p.ID, "r2", "w1")
	require.NoError(t, err)
	require.NoError(t, st.PhotoMoveRelease(ctx, p.ID, "w1")) // handed back: no send, no delivery
	ledgertest.FailPhotoMove(t, st, p.ID, time.Minute)
	require.NoError(t, st.FailureMarkRedriven(ctx, []string{"m"}, []string{p.ID}, time.Now().Add(time.Hour)))
	ledgertest.BackdateUpdated(t, st, p.ID, time.Hour)
	lost, err := st.PhotoMoveListLost(ctx, time.Minute, time.Minute, 10)
	require.NoError(t, err)
	require.Len(t, lost, 1)

	log, err := ledgertest.ReadMoveLog(ctx, st)
	require.NoError(t, err)
	var got []string
	for _, e := range log {
		got = append(got, string(e.Kind)+" "+e.RunID)
	}
	require.Equal(t, []string{"record r1", "record r2", "delivery r2", "redrive r2", "rescue r2"}, got)
}

// needed_legacy_kept excuses a missing object only when every live row that
// needs it is a photo archived purge handled (allPurged).
func TestAllPurged(t *testing.T) {
	t.Parallel()
	purged := map[string]bool{"a": true, "b": true}
	require.True(t, allPurged([]string{"a"}, purged))
	require.True(t, allPurged([]string{"a", "b"}, purged))
	require.False(t, allPurged([]string{"a", "c"}, purged), "a row outside the purge needs it")
	require.False(t, allPurged(nil, purged), "needed by nobody: not the purge's to excuse")
}

// TestFailedAssignRecordIsNotALostMessage replays the history of photo
// 139e796b in the 30-minute soak, seed 249867 (docs/soak-findings.md,
// F18a): recorded by run A (delivered, archived), recorded by run B whose
// invocation failed in an SQS outage, given an owner by an `archived assign`
// that recorded it and then failed to send (SQS refused), re-recorded by B's
// resume (delivered, migrated). Four records, two deliveries, and no message
// lost: the assign never sent its message, and B's resume re-recorded what
// its first invocation never sent.
func TestFailedAssignRecordIsNotALostMessage(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 7, 12, 18, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	const photo, a, b, assign = "139e796b", "run-A", "run-B", "assign-20261207T123825Z-c05a11"
	log := []ledgertest.MoveLogEntry{
		{PhotoID: photo, Kind: ledgertest.LogRecord, RunID: a, N: 1, At: at(56)},
		{PhotoID: photo, Kind: ledgertest.LogRecord, RunID: b, N: 1, At: at(453)},
		{PhotoID: photo, Kind: ledgertest.LogDelivery, RunID: b, N: 1, At: at(1023)},
		{PhotoID: photo, Kind: ledgertest.LogRecord, RunID: assign, N: 1, At: at(1226)},
		{PhotoID: photo, Kind: ledgertest.LogRecord, RunID: b, N: 1, At: at(1855)},
		{PhotoID: photo, Kind: ledgertest.LogDelivery, RunID: b, N: 1, At: at(1962)},
	}
	failed := assignNote{run: assign, start: at(1225), end: at(1290)}
	resumed := []resumeNote{{run: b, checkpoint: "0f000000", at: at(1853)}} // B's resume, from before the photo
	judged := func(assigns []assignNote, resumes []resumeNote) bool {       // true: lost
		hist, _ := histories(log, assigns)
		h := hist[photo]
		return len(h.pending) > 0 && !unsent(photo, h.pending, resumes) && !h.unsentReplayed(photo, resumes)
	}

	hist, skipped := histories(log, []assignNote{failed})
	require.Equal(t, 1, skipped)
	require.Len(t, hist[photo].sends, 3)
	require.False(t, judged([]assignNote{failed}, resumed), "the assign's record set aside, B's first record unsent: nothing lost")
	require.True(t, judged(nil, resumed), "the failed assign's record counted: judged lost, as the soak did")
	require.True(t, judged([]assignNote{failed}, nil), "B's first record counted as sent (no resume): lost")
	require.True(t, judged([]assignNote{failed}, []resumeNote{{run: b, checkpoint: "2", at: at(1853)}}), "B's checkpoint passed the photo: its first record was sent")

	// Its output lost (killed before printing): any assign run's record
	// while it ran.
	require.False(t, judged([]assignNote{{start: at(1225), end: at(1290)}}, resumed))

	// Not set aside: another assign run, a record outside the command's
	// time, a producer run's record, a delivery.
	require.False(t, assignUnsent(log[3], []assignNote{{run: "assign-other", start: at(1225), end: at(1290)}}))
	require.False(t, assignUnsent(log[3], []assignNote{{run: assign, start: at(1300), end: at(1400)}}))
	require.False(t, assignUnsent(log[1], []assignNote{{start: at(0), end: at(2000)}}), "a producer run's record")
	require.False(t, assignUnsent(ledgertest.MoveLogEntry{PhotoID: photo, Kind: ledgertest.LogDelivery, RunID: assign, N: 1, At: at(1230)}, []assignNote{failed}))
}
