package archived_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/queue"
)

type assignBundle struct {
	env       *testenv.Env
	ownerless []seed.Photo
	owned     []seed.Photo
}

// setupArchived seeds photos, migrates them (the ownerless ones are archived)
// and returns them split by whether they had an owner.
func setupArchived(t *testing.T, seedN uint64) *assignBundle {
	t.Helper()
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	opts := seed.Options{Photos: 40, Seed: seedN, OwnerlessRate: 0.2}
	env.Seed(t, opts)
	env.Migrate(t)
	b := &assignBundle{env: env}
	for _, p := range seed.Generate(opts) {
		if p.OwnerID == nil {
			b.ownerless = append(b.ownerless, p)
		} else {
			b.owned = append(b.owned, p)
		}
	}
	require.GreaterOrEqual(t, len(b.ownerless), 4)
	return b
}

func (b *assignBundle) assign(t *testing.T, items []archived.Item, o archived.Options) (*archived.Result, error) {
	t.Helper()
	if o.By == "" {
		o.By = "reviewer@test"
	}
	if o.Source == "" {
		o.Source = "--photo"
	}
	return archived.Run(context.Background(), b.env.Store, b.env.Queue, items, o)
}

func TestAssignUnarchivesRecordsEnqueuesAndTheWorkerMigratesIt(t *testing.T) {
	b := setupArchived(t, 81)
	ctx := context.Background()
	photo, owner := b.ownerless[0], *b.owned[0].OwnerID
	before := b.env.Photo(t, photo.ID)
	require.Equal(t, "archived", *before.Status)

	res, err := b.assign(t, []archived.Item{{PhotoID: photo.ID, OwnerID: owner}}, archived.Options{})
	require.NoError(t, err)
	require.Equal(t, 1, res.Assigned)
	require.NotEmpty(t, res.RunID)

	row := b.env.Photo(t, photo.ID)
	require.Equal(t, owner, *row.OwnerID)
	require.Equal(t, photo.Status, *row.Status, "the status from before the archive is back")
	a := ledgertest.AssignmentOf(t, b.env.Store, photo.ID)
	require.Equal(t, owner, a.OwnerID)
	require.Equal(t, res.RunID, a.RunID)
	require.Equal(t, "reviewer@test", a.AssignedBy)
	require.Equal(t, "--photo", a.Source)
	require.NotNil(t, a.EnqueuedAt)
	run, err := b.env.Store.RunFind(ctx, res.RunID)
	require.NoError(t, err)
	require.Equal(t, ledger.RunAssign, run.Kind)
	require.Equal(t, photo.ID, run.Selection.Assign.Photo)
	require.NotNil(t, run.FinishedAt)
	require.EqualValues(t, 1, run.Counts.Enqueued)

	msgs, err := b.env.Queue.Receive(ctx, 10, time.Second, time.Second)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	m, err := queue.Decode(msgs[0].Body)
	require.NoError(t, err)
	require.Equal(t, queue.Message{V: 1, PhotoID: photo.ID, RunID: res.RunID}, m)
	require.NoError(t, b.env.Queue.ChangeVisibility(ctx, msgs[0].ReceiptHandle, 0))

	b.env.Drain(t)
	row = b.env.Photo(t, photo.ID)
	want := keylayout.OriginalKey(owner, photo.ID, photo.Original[strings.LastIndex(photo.Original, ".")+1:])
	require.Equal(t, want, row.Original, "migrated into the assigned owner's prefix")
	ok, err := b.env.Objects.Exists(ctx, row.Original)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1, ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool {
		return m.PhotoID == photo.ID && m.State == "migrated" && m.RunID == res.RunID
	}))
}

func TestAssignIsIdempotentAndRefusesASecondOwner(t *testing.T) {
	b := setupArchived(t, 82)
	photo, owner, other := b.ownerless[0], *b.owned[0].OwnerID, *b.owned[1].OwnerID
	for owner == other {
		other = *b.owned[2].OwnerID
	}
	_, err := b.assign(t, []archived.Item{{PhotoID: photo.ID, OwnerID: owner}}, archived.Options{})
	require.NoError(t, err)
	runs := len(ledgertest.Runs(t, b.env.Store))

	res, err := b.assign(t, []archived.Item{{PhotoID: photo.ID, OwnerID: owner}}, archived.Options{})
	require.NoError(t, err, "the same decision again is a no-op")
	require.Equal(t, 1, res.Noop)
	require.Zero(t, res.Assigned)
	require.Empty(t, res.RunID)
	require.Equal(t, runs, len(ledgertest.Runs(t, b.env.Store)), "and makes no run")

	_, err = b.assign(t, []archived.Item{{PhotoID: photo.ID, OwnerID: other}}, archived.Options{})
	var ie *archived.InputError
	require.ErrorAs(t, err, &ie)
	require.ErrorContains(t, err, "already assigned to owner "+owner)
	require.ErrorContains(t, err, "refusing to reassign")
	require.Equal(t, owner, *b.env.Photo(t, photo.ID).OwnerID)
}

func TestAssignRefusesBadInputNamingEachProblem(t *testing.T) {
	b := setupArchived(t, 83)
	owner := *b.owned[0].OwnerID
	cases := []struct {
		name   string
		item   archived.Item
		reason string
	}{
		{"malformed photo", archived.Item{PhotoID: "../x", OwnerID: owner}, "photo id"},
		{"malformed owner", archived.Item{PhotoID: b.ownerless[0].ID, OwnerID: "bob smith"}, "owner id"},
		{"unknown photo", archived.Item{PhotoID: "00000000-0000-4000-8000-000000000001", OwnerID: owner}, "unknown photo id"},
		{"not archived", archived.Item{PhotoID: b.owned[1].ID, OwnerID: owner}, "is not archived"},
		{"owner with no photo", archived.Item{PhotoID: b.ownerless[0].ID, OwnerID: "11111111-2222-4333-8444-555555555555"}, "owns no photo"},
	}
	for _, c := range cases {
		_, err := b.assign(t, []archived.Item{c.item}, archived.Options{})
		var ie *archived.InputError
		require.ErrorAs(t, err, &ie, c.name)
		require.ErrorContains(t, err, c.reason, c.name)
		require.ErrorContains(t, err, "nothing was changed", c.name)
		require.Equal(t, c.name == "owner with no photo", ie.Invalid[0].NewOwner, "%s: the problem AllowNewOwner overrides is told apart", c.name)
	}
	require.Empty(t, ledgertest.Assignments(t, b.env.Store))
	require.Zero(t, ledgertest.Count(ledgertest.Runs(t, b.env.Store), func(r ledgertest.Run) bool { return r.Kind == "assign" }))

	// --allow-new-owner accepts an owner without photos.
	res, err := b.assign(t, []archived.Item{{PhotoID: b.ownerless[0].ID, OwnerID: "11111111-2222-4333-8444-555555555555"}}, archived.Options{AllowNewOwner: true})
	require.NoError(t, err)
	require.Equal(t, 1, res.Assigned)
}

func TestAssignCSVIsAllOrNothingUnlessSkipInvalid(t *testing.T) {
	b := setupArchived(t, 84)
	owner := *b.owned[0].OwnerID
	lines := []string{
		"owner_id,photo_id", // header, columns in any order
		owner + "," + b.ownerless[0].ID,
		owner + "," + b.ownerless[1].ID,
		"oops",                      // line 4: one field
		owner + ",not-a-photo",      // line 5
		"",                          // blank (skipped)
		"# a comment",               // skipped
		owner + "," + b.owned[2].ID, // line 8: not archived
		*b.owned[1].OwnerID + "," + b.ownerless[1].ID, // line 9: second owner for line 3's photo
		owner + "," + b.ownerless[2].ID,
	}
	if *b.owned[1].OwnerID == owner {
		lines[8] = "00000000-0000-4000-8000-00000000000a," + b.ownerless[1].ID
	}
	csvText := strings.Join(lines, "\n") + "\n"
	items, invalid, sum, err := archived.ParseCSV(strings.NewReader(csvText))
	require.NoError(t, err)
	require.Len(t, sum, 64)
	require.Len(t, items, 5)
	require.Len(t, invalid, 2)

	o := archived.Options{Source: "review.csv", Invalid: invalid}
	_, err = b.assign(t, items, o)
	var ie *archived.InputError
	require.ErrorAs(t, err, &ie)
	var got []int
	for _, v := range ie.Invalid {
		got = append(got, v.Line)
	}
	require.ElementsMatch(t, []int{4, 5, 8, 9}, got, "every bad line by number: %v", err)
	require.ErrorContains(t, err, "review.csv: 4 of the assignments cannot be applied; nothing was changed")
	require.Empty(t, ledgertest.Assignments(t, b.env.Store), "nothing half-applied")
	for _, p := range b.ownerless[:3] {
		require.Equal(t, "archived", *b.env.Photo(t, p.ID).Status)
	}

	dry, err := b.assign(t, items, archived.Options{Source: "review.csv", Invalid: invalid, SkipInvalid: true, DryRun: true})
	require.NoError(t, err)
	require.Equal(t, 3, dry.Assigned)
	require.Empty(t, ledgertest.Assignments(t, b.env.Store), "a dry run changes nothing")

	o.SkipInvalid = true
	o.SHA256, o.Lines = sum, 8
	res, err := b.assign(t, items, o)
	require.NoError(t, err)
	require.Equal(t, 3, res.Assigned)
	require.Len(t, res.Skipped, 4)
	var srcs []string
	for _, a := range ledgertest.Assignments(t, b.env.Store) {
		srcs = append(srcs, a.Source)
	}
	require.Equal(t, []string{"review.csv:10", "review.csv:2", "review.csv:3"}, srcs, "each assignment records its line")
	run, err := b.env.Store.RunFind(context.Background(), res.RunID)
	require.NoError(t, err)
	require.Equal(t, sum, run.Selection.Assign.SHA256)
	require.EqualValues(t, 4, run.Counts.Skipped)

	// The same file again: the applied lines are no-ops.
	res, err = b.assign(t, items, o)
	require.NoError(t, err)
	require.Zero(t, res.Assigned)
	require.Equal(t, 3, res.Noop)
}

func TestAssignResumesAPhotoAssignedButNotEnqueued(t *testing.T) {
	b := setupArchived(t, 85)
	ctx := context.Background()
	photo, owner := b.ownerless[0], *b.owned[0].OwnerID
	// An invocation that stopped after the row's update and before the send.
	oldStatus := ledgertest.PhotoMoveOf(t, b.env.Store, photo.ID).OldStatus
	_, err := b.env.Store.RunCreate(ctx, "assign-interrupted", ledger.RunAssign, nil)
	require.NoError(t, err)
	ok, err := b.env.Store.PhotoAssignOwner(ctx, ledger.AssignInput{PhotoID: photo.ID, OwnerID: owner, RunID: "assign-interrupted", By: "x", Source: "--photo",
		OldStatus: oldStatus, Keys: ledger.Keys{Original: photo.Original, Processed: photo.Processed, Thumbnail: photo.Thumbnail}})
	require.NoError(t, err)
	require.True(t, ok)

	res, err := b.assign(t, []archived.Item{{PhotoID: photo.ID, OwnerID: owner}}, archived.Options{})
	require.NoError(t, err)
	require.Equal(t, 1, res.Resent)
	msgs, err := b.env.Queue.Receive(ctx, 10, time.Second, time.Minute)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	m, err := queue.Decode(msgs[0].Body)
	require.NoError(t, err)
	require.Equal(t, "assign-interrupted", m.RunID, "the message belongs to the run that assigned it")
	require.Equal(t, 1, ledgertest.Count(ledgertest.Assignments(t, b.env.Store), func(a ledger.Assignment) bool { return a.EnqueuedAt != nil }))

	// Assign is a compare-and-swap on the row as archived: a second one fails.
	ok, err = b.env.Store.PhotoAssignOwner(ctx, ledger.AssignInput{PhotoID: photo.ID, OwnerID: owner, RunID: "assign-interrupted", By: "x", Source: "--photo",
		OldStatus: oldStatus, Keys: ledger.Keys{Original: photo.Original, Processed: photo.Processed, Thumbnail: photo.Thumbnail}})
	require.NoError(t, err)
	require.False(t, ok)
}
