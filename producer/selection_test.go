package producer_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/producer"
)

// owned returns the seeded photos by owner, ownerless ones left out.
func owned(photos []seed.Photo) map[string][]string {
	m := map[string][]string{}
	for _, p := range photos {
		if p.OwnerID != nil {
			m[*p.OwnerID] = append(m[*p.OwnerID], p.ID)
		}
	}
	return m
}

func (b *testBundle) run(t *testing.T, cfg producer.Config) producer.Summary {
	t.Helper()
	s, err := producer.New(b.env.Store, b.env.Queue, b.log, cfg).Run(context.Background())
	require.NoError(t, err)
	return s
}

func TestOwnerSelectionEnqueuesOnlyThoseOwnersAndIsRecorded(t *testing.T) {
	b := setup(t)
	opts := seed.Options{Photos: 60, Owners: 6, Seed: 21}
	b.env.Seed(t, opts)
	byOwner := owned(seed.Generate(opts))
	var owners []string
	for o := range byOwner {
		owners = append(owners, o)
	}
	slices.Sort(owners)
	pick := owners[:2]
	want := append(slices.Clone(byOwner[pick[0]]), byOwner[pick[1]]...)

	s := b.run(t, producer.Config{Selection: &ledger.Selection{Owners: []string{pick[1], pick[0], pick[0]}}})
	require.EqualValues(t, len(want), s.Enqueued)
	require.Zero(t, s.Ownerless, "an owner selection never includes ownerless photos")
	require.ElementsMatch(t, want, b.drainIDs(t))

	run, err := b.env.Store.RunFind(context.Background(), s.RunID)
	require.NoError(t, err)
	require.Equal(t, pick, run.Selection.Owners, "the selection is recorded, sorted and without duplicates")
	require.NotNil(t, run.FinishedAt)

	_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{Selection: &ledger.Selection{Owners: []string{"../etc"}}}).Run(context.Background())
	var oe *producer.InvalidOwnerError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, "../etc", oe.Owner)
	require.ErrorIs(t, err, keylayout.ErrInvalidID)
}

func TestSampleIsDeterministicNestedAndAgreesWithSQL(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 300, Seed: 22, OwnerlessRate: 0.01})
	ctx := context.Background()

	// The bucket Postgres computes is the one SampleBucket documents.
	rows, err := b.env.Store.Pool().Query(ctx, `SELECT id::text, ((('x' || substr(md5(id::text), 1, 8))::bit(32)::bigint) % 10000)::int FROM photos`)
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		var id string
		var bucket int
		require.NoError(t, rows.Scan(&id, &bucket))
		require.Equal(t, ledger.SampleBucket(id), bucket, id)
		n++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 300, n)

	s10 := b.run(t, producer.Config{NewRun: true, Selection: &ledger.Selection{SamplePercent: 10}})
	ten := b.drainIDs(t)
	require.EqualValues(t, len(ten), s10.Enqueued)
	s1 := b.run(t, producer.Config{NewRun: true, Selection: &ledger.Selection{SamplePercent: 1.5}})
	one := b.drainIDs(t)
	require.EqualValues(t, len(one), s1.Enqueued)
	require.NotEmpty(t, one)
	require.Less(t, len(one), len(ten))
	require.Greater(t, len(ten), 10, "about 30 of 300")
	require.Less(t, len(ten), 60)
	for _, id := range one {
		require.Contains(t, ten, id, "the 1.5% sample is inside the 10% one")
		require.Less(t, ledger.SampleBucket(id), 150)
	}
	s1again := b.run(t, producer.Config{NewRun: true, Selection: &ledger.Selection{SamplePercent: 1.5}})
	require.ElementsMatch(t, one, b.drainIDs(t), "the same sample every time")
	require.NotEqual(t, s1.RunID, s1again.RunID)

	for _, bad := range []float64{-1, 100.5, 0.001, 12.345} {
		_, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{Selection: &ledger.Selection{SamplePercent: bad}}).Run(ctx)
		require.ErrorIs(t, err, ledger.ErrSamplePercent, "%g", bad)
	}
}

func TestLimitStopsTheRunAcrossResumes(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 50, Seed: 23})
	ctx, cancel := context.WithCancel(context.Background())
	sel := &ledger.Selection{Limit: 25}
	cfg := producer.Config{PageSize: 20, GroupSize: 10, InFlight: 1, Selection: sel}
	afterGroup := func(n int64) {
		if n >= 10 {
			cancel()
		}
	}
	s1, err := producer.SetAfterGroup(producer.New(b.env.Store, b.env.Queue, b.log, cfg), afterGroup).Run(ctx)
	require.Error(t, err)
	require.EqualValues(t, 10, s1.Enqueued)

	s2 := b.run(t, cfg)
	require.True(t, s2.Resumed)
	require.EqualValues(t, 15, s2.Enqueued, "the limit counts what the run enqueued before the interruption")
	require.True(t, s2.LimitReached)
	ids := b.drainIDs(t)
	require.Len(t, ids, 25)

	// The ledger attributes exactly those 25 to the run, and they are the first
	// 25 legacy photos in id order.
	var first []string
	rows, err := b.env.Store.Pool().Query(context.Background(), `SELECT id::text FROM photos ORDER BY id LIMIT 25`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		first = append(first, id)
	}
	require.ElementsMatch(t, first, ids)
	run, err := b.env.Store.RunFind(context.Background(), s1.RunID)
	require.NoError(t, err)
	require.EqualValues(t, 25, run.Counts.Enqueued)
	require.Equal(t, first[24], run.Checkpoint, "the checkpoint is the last photo enqueued, not the end of its group")
}

func TestResumeWithAnotherSelectionIsRefused(t *testing.T) {
	b := setup(t)
	b.env.Seed(t, seed.Options{Photos: 30, Seed: 24})
	ctx, cancel := context.WithCancel(context.Background())
	cfg := producer.Config{PageSize: 10, GroupSize: 10, InFlight: 1, Selection: &ledger.Selection{SamplePercent: 50}}
	afterGroup := func(int64) { cancel() }
	s1, err := producer.SetAfterGroup(producer.New(b.env.Store, b.env.Queue, b.log, cfg), afterGroup).Run(ctx)
	require.Error(t, err)

	_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{}).Run(context.Background())
	var sd *ledger.SelectionDiffersError
	require.ErrorAs(t, err, &sd, "a plain invocation does not silently continue a staged run")
	require.Equal(t, s1.RunID, sd.RunID)
	require.ErrorContains(t, err, "sample 50%")

	s := b.run(t, producer.Config{NewRun: true})
	require.NotEqual(t, s1.RunID, s.RunID)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "photos.csv")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestPhotosFromWithAMalformedLineRefusesTheWholeFile(t *testing.T) {
	b := setup(t)
	opts := seed.Options{Photos: 10, Seed: 25}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	path := writeFile(t, strings.Join([]string{
		"photo_id,note",
		photos[0].ID + ",ok",
		"not-an-id,typo",
		photos[1].ID + ",ok",
		"",
		"12,integer in a uuid table",
		`"unterminated,quote`,
	}, "\n")+"\n")
	_, err := producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{Selection: &ledger.Selection{PhotosFrom: &ledger.PhotoList{Path: path}}}).Run(context.Background())
	var le *producer.ListError
	require.ErrorAs(t, err, &le)
	var lines []int
	for _, l := range le.Bad {
		lines = append(lines, l.Line)
	}
	require.Equal(t, []int{3, 6, 7}, lines, "every malformed line, by its line number")
	require.Equal(t, 3, le.Count)
	require.ErrorContains(t, err, "nothing was enqueued")
	require.ErrorContains(t, err, `line 3: "not-an-id,typo"`)
	require.Empty(t, b.drainIDs(t))
	n := ledgertest.Rows(t, b.env.Store, ledgertest.TallyPhotoMoves, ledgertest.TallyRuns)
	require.Zero(t, n, "no run, no ledger row")

	_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{Selection: &ledger.Selection{PhotosFrom: &ledger.PhotoList{Path: writeFile(t, "# nothing\n\n")}}}).Run(context.Background())
	require.ErrorIs(t, err, producer.ErrEmptyPhotoList)
	_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{Selection: &ledger.Selection{PhotosFrom: &ledger.PhotoList{Path: "/nonexistent/list"}}}).Run(context.Background())
	var pe *producer.PhotoListError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "/nonexistent/list", pe.Path)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestPhotosFromEnqueuesTheListedLegacyPhotosAndResumesByLine(t *testing.T) {
	b := setup(t)
	opts := seed.Options{Photos: 40, Seed: 26}
	b.env.Seed(t, opts)
	photos := seed.Generate(opts)
	// 25 listed photos in reverse order, one twice, one unknown id, and one
	// already user-scoped (not legacy): only the legacy ones are enqueued.
	var lines []string
	var want []string
	for i := 24; i >= 0; i-- {
		lines = append(lines, strings.ToUpper(photos[i].ID))
		if i != 3 {
			want = append(want, photos[i].ID)
		}
	}
	lines = append(lines, photos[7].ID, "00000000-0000-4000-8000-000000000000")
	_, err := b.env.Store.Pool().Exec(context.Background(), `UPDATE photos SET original_key = 'users/' || owner_id || '/raw/' || id || '/original.jpg', processed_key = NULL, thumbnail_key = NULL WHERE id = $1 AND owner_id IS NOT NULL`, photos[3].ID)
	require.NoError(t, err)
	if photos[3].OwnerID == nil {
		want = append(want, photos[3].ID)
	}
	path := writeFile(t, strings.Join(lines, "\n")+"\n")

	ctx, cancel := context.WithCancel(context.Background())
	sel := &ledger.Selection{PhotosFrom: &ledger.PhotoList{Path: path}}
	cfg := producer.Config{PageSize: 10, GroupSize: 10, InFlight: 1, Selection: sel}
	afterGroup := func(int64) { cancel() }
	s1, err := producer.SetAfterGroup(producer.New(b.env.Store, b.env.Queue, b.log, cfg), afterGroup).Run(ctx)
	require.Error(t, err)
	require.EqualValues(t, 10, s1.Enqueued)
	run, err := b.env.Store.RunFind(context.Background(), s1.RunID)
	require.NoError(t, err)
	require.Equal(t, "line:10", run.Checkpoint)
	require.Equal(t, int64(27), run.Selection.PhotosFrom.IDs)
	require.Len(t, run.Selection.PhotosFrom.SHA256, 64)

	// Another file under the same run is refused; the same file resumes.
	_, err = producer.New(b.env.Store, b.env.Queue, b.log, producer.Config{Selection: &ledger.Selection{PhotosFrom: &ledger.PhotoList{Path: writeFile(t, photos[0].ID+"\n")}}}).Run(context.Background())
	var sd *ledger.SelectionDiffersError
	require.ErrorAs(t, err, &sd)

	s2 := b.run(t, cfg)
	require.True(t, s2.Resumed)
	ids := b.drainIDs(t)
	require.Len(t, ids, len(want)+1, "the duplicated id, listed again in a later chunk, is sent twice (harmless)")
	require.ElementsMatch(t, want, slices.Compact(sortedCopy(ids)))
	require.EqualValues(t, len(want)+1, s1.Enqueued+s2.Enqueued)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func TestFullRunAfterAStagedRunSkipsWhatWasMigrated(t *testing.T) {
	b := setup(t)
	opts := seed.Options{Photos: 40, Owners: 4, Seed: 27}
	res := b.env.Seed(t, opts)
	byOwner := owned(seed.Generate(opts))
	var owner string
	for o := range byOwner {
		owner = o
		break
	}
	staged := b.run(t, producer.Config{Selection: &ledger.Selection{Owners: []string{owner}}})
	require.EqualValues(t, len(byOwner[owner]), staged.Enqueued)
	b.env.Drain(t)

	full := b.run(t, producer.Config{})
	require.EqualValues(t, res.Photos-len(byOwner[owner]), full.Found, "the staged owner's photos are migrated: the full run does not find them")
	ids := b.drainIDs(t)
	for _, id := range byOwner[owner] {
		require.NotContains(t, ids, id)
	}
	stagedRows := ledgertest.Count(ledgertest.PhotoMoves(t, b.env.Store), func(m ledgertest.PhotoMove) bool { return m.RunID == staged.RunID && m.State == "migrated" })

	require.Equal(t, len(byOwner[owner]), stagedRows, "the staged run keeps its photos in the ledger")
}
