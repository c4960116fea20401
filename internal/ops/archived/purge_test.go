package archived_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/ops/verify"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

type legacyJob struct{ id, orig, proc, thumb, meta, anim, orphan string }

func (j legacyJob) keys() []string { return []string{j.orig, j.proc, j.thumb, j.meta, j.anim} }

func putJob(t *testing.T, env *testenv.Env) legacyJob {
	t.Helper()
	j := legacyJob{id: uuid.NewString()}
	j.orig, j.thumb, j.meta = "uploaded/"+j.id+".jpg", "thumbnails/"+j.id+".jpg", "meta/"+j.id+".json"
	j.proc = "restored/" + j.id + "/" + uuid.NewString() + ".jpg"
	j.anim = "animated/" + j.id + "/" + uuid.NewString() + "_loop.mp4"
	j.orphan = "restored/" + j.id + "/" + uuid.NewString() + ".png" // a restore no row references
	for _, k := range append(j.keys(), j.orphan) {
		env.Put(t, k, []byte(k), "application/octet-stream", nil)
	}
	return j
}

func insert(t *testing.T, env *testenv.Env, j legacyJob, owner *string) string {
	t.Helper()
	id := uuid.NewString()
	env.InsertPhoto(t, id, owner, j.orig, &j.proc, &j.thumb)
	return id
}

func present(t *testing.T, env *testenv.Env, k string) bool {
	ok, err := env.Objects.Exists(context.Background(), k)
	require.NoError(t, err)
	return ok
}

// Issue 11, part 3: purge deletes the legacy objects of photos archived longer
// than the retention period, and only those no other row needs; it records
// every deletion, prints the SQL for the application team, runs nothing on
// the application's rows, and is a dry run unless told --yes.
func TestPurgeDeletesOnlyWhatNoOtherRowNeeds(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	owner := func() *string { o := uuid.NewString(); return &o }

	alone := putJob(t, env) // archived long ago, nobody else: goes
	a := insert(t, env, alone, nil)
	shared := putJob(t, env) // archived long ago, but an owned row not migrated shares it: stays
	b := insert(t, env, shared, nil)
	dup := putJob(t, env) // archived long ago, an owned duplicate migrated with its own copies: goes
	d := insert(t, env, dup, nil)
	insert(t, env, dup, owner())
	recent := putJob(t, env) // archived recently: not yet
	insert(t, env, recent, nil)

	env.Migrate(t)
	insert(t, env, shared, owner()) // arrives after the migration, not migrated yet
	ledgertest.BackdateArchived(t, env.Store, []string{a, b, d}, 100*24*time.Hour)

	dry, err := archived.Purge(ctx, env.Store, env.Objects, archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour})
	require.NoError(t, err)
	require.True(t, dry.DryRun)
	require.Equal(t, 10, dry.Deleted, "%+v", dry)
	for _, j := range []legacyJob{alone, shared, dup, recent} {
		for _, k := range j.keys() {
			require.True(t, present(t, env, k), "a dry run deletes nothing: %s", k)
		}
	}

	rep, err := archived.Purge(ctx, env.Store, env.Objects, archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.NoError(t, err)
	require.Equal(t, 10, rep.Deleted)
	for _, k := range append(alone.keys(), dup.keys()...) {
		require.False(t, present(t, env, k), "%s purged", k)
	}
	for _, j := range []legacyJob{shared, recent} {
		for _, k := range j.keys() {
			require.True(t, present(t, env, k), "%s kept", k)
		}
	}
	for _, j := range []legacyJob{alone, shared, dup, recent} {
		require.True(t, present(t, env, j.orphan), "orphans are never purged")
	}
	require.Contains(t, rep.SQL, a)
	require.Contains(t, rep.SQL, d)
	require.NotContains(t, rep.SQL, b)
	require.True(t, strings.HasPrefix(rep.SQL, "DELETE FROM photos WHERE status = 'archived' AND owner_id IS NULL AND id IN ("))
	var rows, recorded int
	require.NoError(t, env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM photos WHERE id = ANY($1)`, []string{a, d}).Scan(&rows))
	require.Equal(t, 2, rows, "the application's rows are the application's to delete")
	recorded = ledgertest.Count(ledgertest.Purges(t, env.Store), func(p ledgertest.Purge) bool { return p.DeletedAt != nil })

	require.Equal(t, 10, recorded, "every deletion is recorded")

	// Idempotent: a second run finds nothing more to do.
	again, err := archived.Purge(ctx, env.Store, env.Objects, archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.NoError(t, err)
	require.Zero(t, again.Deleted)

	// The purged rows are not verify failures: they await the application.
	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.Zero(t, r.ProblemsByKind[verify.ReferencedKeyMissing], "%+v", r.Problems)
	require.EqualValues(t, 2, r.PurgedRows)
	// Nor are the legacy objects purge deleted of dup's owned duplicate's
	// moves (F14): purge recorded them against the archived photo.
	require.Zero(t, r.ProblemsByKind[verify.LegacyObjectMissing], "%+v", r.Problems)
	require.EqualValues(t, 5, r.LegacyPurged)

	_, err = archived.Purge(ctx, env.Store, env.Objects, archived.PurgeOptions{})
	require.ErrorIs(t, err, archived.ErrNoRetention)
}

// Found by the soak (seed 880804, default flags since issue 18 item 5:
// verify_deep 4; docs/soak-findings.md F14): purge deletes a legacy object an
// owned duplicate of the job no longer needs (it has its own committed copy),
// as it should, but records the deletion only against the archived photo.
// verify then finds the duplicate's move without its legacy object and no
// cleanup record of a deletion: "legacy_object_missing: the legacy object is
// gone although cleanup never deleted it". And where the duplicate lacks a
// copy of one object (here it has no thumbnail), purge keeps that one and
// deletes the rest, the archived photo's purge is incomplete, and verify
// reports its row's references to the keys purge deleted as
// referenced_key_missing. Both are purge's own recorded deletions: verify
// must account for them, as it does for a complete purge (PurgedRows).
func TestVerifyAccountsForWhatPurgeDeletedOfAMigratedDuplicatesJob(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	owner := uuid.NewString()

	dup := putJob(t, env)
	d := insert(t, env, dup, nil)                                          // archived, purged
	env.InsertPhoto(t, uuid.NewString(), &owner, dup.orig, &dup.proc, nil) // owned, migrated, no thumbnail of its own
	other := putJob(t, env)                                                // another owned photo, migrated: nothing purged of it
	o := insert(t, env, other, &owner)
	run := env.Migrate(t)
	ledgertest.BackdateArchived(t, env.Store, []string{d}, 100*24*time.Hour)

	rep, err := archived.Purge(ctx, env.Store, env.Objects, archived.PurgeOptions{OlderThan: 90 * 24 * time.Hour, Yes: true})
	require.NoError(t, err)
	require.Positive(t, rep.Deleted, "%+v", rep)
	require.False(t, present(t, env, dup.orig), "the original, which the duplicate has its own copy of, is purged")
	require.True(t, present(t, env, dup.thumb), "the thumbnail, which the duplicate has no copy of, is kept")

	r, err := verify.Run(ctx, env.Store, env.Objects, verify.Options{})
	require.NoError(t, err)
	require.Zero(t, r.ProblemsByKind[verify.LegacyObjectMissing], "%+v", r.Problems)
	require.Zero(t, r.ProblemsByKind[verify.ReferencedKeyMissing], "%+v", r.Problems)
	require.True(t, r.OK(), "%+v", r.Problems)
	// The duplicate's moves of the original, the restore, the metadata and
	// the animation: purge deleted their legacy objects.
	require.EqualValues(t, 4, r.LegacyPurged)
	// The archived row's references to the original and the restore await
	// the application; its thumbnail is still there.
	require.EqualValues(t, 2, r.PurgedReferences)
	require.Zero(t, r.PurgedRows, "the purge of the archived photo is not complete")

	// Verify keeps its teeth: a legacy object gone with no record of a
	// deletion, cleanup's or purge's, is still a problem. The thumbnail
	// purge kept for the archived row, and the original of the other
	// photo's move, deleted behind keymigrate's back.
	require.NoError(t, env.Objects.Delete(ctx, dup.thumb))
	require.NoError(t, env.Objects.Delete(ctx, other.orig))
	want := []string{
		verify.LegacyObjectMissing + " " + o + " " + other.orig,
		verify.ReferencedKeyMissing + " " + d + " " + dup.thumb,
	}
	check := func(name string, r *verify.Report) {
		t.Helper()
		var got []string
		for _, p := range r.Problems {
			got = append(got, p.Kind+" "+p.PhotoID+" "+p.Key)
		}
		require.ElementsMatch(t, want, got, "%s: %+v", name, r.Problems)
		require.EqualValues(t, 2, r.ProblemCount, name)
		require.EqualValues(t, 4, r.LegacyPurged, name)
		require.EqualValues(t, 2, r.PurgedReferences, name)
	}
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{MaxProblems: 100})
	require.NoError(t, err)
	check("whole", r)
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{MaxProblems: 100, Deep: true})
	require.NoError(t, err)
	check("deep", r)
	r, err = verify.Run(ctx, env.Store, env.Objects, verify.Options{MaxProblems: 100, RunID: run.RunID})
	require.NoError(t, err)
	check("run", r)

	// Sharded, over the whole ledger and over the run: the union of the
	// shards is the same verdict.
	for _, runID := range []string{"", run.RunID} {
		so := verify.Options{MaxProblems: 100, Shards: 3, Resume: true, RunID: runID}
		for i := range so.Shards {
			so.Shard = i
			_, err := verify.Run(ctx, env.Store, env.Objects, so)
			require.NoError(t, err)
		}
		u, _, err := verify.Union(ctx, env.Store, so)
		require.NoError(t, err)
		check("shards of run "+runID, u)
	}
}
