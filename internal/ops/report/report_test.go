package report_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/report"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/producer"
)

func TestReportListsEveryPhotoOfTheRunWithItsObjects(t *testing.T) {
	t.Parallel()
	defer report.SetPageSize(7)() // several pages
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 40, Seed: 61, OwnerlessRate: 0.1}
	env.Seed(t, opts)
	photos := seed.Generate(opts)
	// One photo whose original is gone: it fails with source_missing.
	var broken seed.Photo
	for _, p := range photos {
		if p.OwnerID != nil {
			broken = p
			break
		}
	}
	require.NoError(t, env.Objects.Delete(ctx, broken.Original))
	s := env.MigrateWith(t, producer.Config{})

	var csvBuf bytes.Buffer
	sum, err := report.Write(ctx, env.Store, s.RunID, report.CSV, &csvBuf)
	require.NoError(t, err)
	require.EqualValues(t, 40, sum.Photos, "every photo of the run")
	require.EqualValues(t, 1, sum.States["failed"])

	recs, err := csv.NewReader(&csvBuf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, report.Header, recs[0])
	col := map[string]int{}
	for i, h := range report.Header {
		col[h] = i
	}
	byPhoto := map[string][][]string{}
	for _, r := range recs[1:] {
		require.Equal(t, s.RunID, r[col["run_id"]])
		byPhoto[r[col["photo_id"]]] = append(byPhoto[r[col["photo_id"]]], r)
	}
	require.Len(t, byPhoto, 40)

	moves := ledgertest.ObjectMoves(t, env.Store)
	objects := len(moves)
	var bytesTotal int64
	for _, o := range moves {
		bytesTotal += o.Size
	}

	require.EqualValues(t, objects, sum.Objects, "one line per recorded object")
	require.Equal(t, bytesTotal, sum.Bytes)

	for _, p := range photos {
		lines := byPhoto[p.ID]
		require.NotEmpty(t, lines, p.ID)
		switch {
		case p.ID == broken.ID:
			require.Equal(t, "failed", lines[0][col["state"]])
			require.Equal(t, "source_missing", lines[0][col["failure_reason"]])
			require.Contains(t, lines[0][col["last_error"]], broken.Original)
		case p.OwnerID == nil:
			require.Equal(t, "archived", lines[0][col["state"]])
			require.Equal(t, "original", lines[0][col["kind"]])
			require.Equal(t, p.Original, lines[0][col["old_key"]], "an archived photo's line names its legacy key")
			require.Empty(t, lines[0][col["new_key"]])
			require.NotEmpty(t, lines[0][col["archived_at"]])
		default:
			require.Len(t, lines, len(p.Objects), "one line per object of %s", p.ID)
			want := map[string]seed.Object{}
			for _, o := range p.Objects {
				want[o.Key] = o
			}
			for _, l := range lines {
				require.Equal(t, "migrated", l[col["state"]])
				o, ok := want[l[col["old_key"]]]
				require.True(t, ok, "old key %s belongs to the photo", l[col["old_key"]])
				require.Contains(t, l[col["new_key"]], "users/"+*p.OwnerID+"/")
				require.Equal(t, strconv.FormatInt(o.Size, 10), l[col["bytes"]])
				require.Equal(t, "committed", l[col["object_state"]])
				require.NotEmpty(t, l[col["verify_method"]])
				require.NotEmpty(t, l[col["swapped_at"]])
				require.Equal(t, "1", l[col["attempts"]])
			}
		}
	}

	// JSON lines: the same lines, one object each.
	var jl bytes.Buffer
	sum2, err := report.Write(ctx, env.Store, s.RunID, report.JSONL, &jl)
	require.NoError(t, err)
	require.Equal(t, sum, sum2)
	sc := bufio.NewScanner(&jl)
	n := 0
	for sc.Scan() {
		var l report.Line
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		require.Equal(t, s.RunID, l.RunID)
		n++
	}
	require.EqualValues(t, sum.Lines, n)
	require.Equal(t, len(recs)-1, n)
}

func TestReportOfAnUnknownRunIsRefusedBeforeWriting(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	var buf bytes.Buffer
	_, err := report.Write(context.Background(), env.Store, "run-nope", report.CSV, &buf)
	require.ErrorIs(t, err, ledger.ErrRunNotFound)
	require.ErrorContains(t, err, "migratectl runs")
	require.Zero(t, buf.Len(), "nothing written")
	_, err = report.ParseFormat("xml")
	require.ErrorContains(t, err, `unknown report format "xml": the formats are csv and jsonl`)
}

func TestReportOfAStagedRunHasOnlyItsPhotos(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	opts := seed.Options{Photos: 30, Owners: 3, Seed: 62, OwnerlessRate: 0.01}
	env.Seed(t, opts)
	owner := ""
	want := map[string]bool{}
	for _, p := range seed.Generate(opts) {
		if p.OwnerID != nil && (owner == "" || owner == *p.OwnerID) {
			owner = *p.OwnerID
			want[p.ID] = true
		}
	}
	staged := env.MigrateWith(t, producer.Config{Selection: &ledger.Selection{Owners: []string{owner}}})
	env.MigrateWith(t, producer.Config{})
	var buf bytes.Buffer
	sum, err := report.Write(ctx, env.Store, staged.RunID, report.JSONL, &buf)
	require.NoError(t, err)
	require.EqualValues(t, len(want), sum.Photos)
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var l report.Line
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		require.True(t, want[l.PhotoID], "photo %s is not the staged owner's", l.PhotoID)
		require.Equal(t, owner, l.OwnerID)
	}
}
