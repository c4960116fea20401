package archived_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/archived"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
)

func TestReportListsEveryOwnerlessPhotoWithSizes(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	opts := seed.Options{Photos: 60, Seed: 51, OwnerlessRate: 0.15}
	res := env.Seed(t, opts)
	env.Migrate(t)

	var buf bytes.Buffer
	n, err := archived.Write(context.Background(), env.Store, env.Objects, &buf)
	require.NoError(t, err)
	require.Equal(t, res.Ownerless, n)
	recs, err := csv.NewReader(&buf).ReadAll()
	require.NoError(t, err)
	require.Equal(t, archived.Header, recs[0])
	require.Len(t, recs, n+1)
	want := map[string]seed.Photo{}
	for _, p := range seed.Generate(opts) {
		if p.OwnerID == nil {
			want[p.ID] = p
		}
	}
	for _, r := range recs[1:] {
		p, ok := want[r[0]]
		require.True(t, ok, "photo %s has an owner or does not exist", r[0])
		require.Equal(t, "archived", r[1])
		require.Equal(t, p.Original, r[2])
		require.Equal(t, p.Objects[0].Size, mustInt(t, r[3]), "the original's size comes from S3")
		require.NotEmpty(t, r[8], "created_at")
		require.NotEmpty(t, r[9], "archived_at")
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		require.True(t, c >= '0' && c <= '9', "size %q", s)
		n = n*10 + int64(c-'0')
	}
	return n
}
