package ledger_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// An application whose photos.id is an integer: the keyset scans must follow
// the column's order, not the order of its text (where "10" < "9"), or pages
// skip rows.
func TestKeysetScansFollowIntegerIDs(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	_, err := env.Store.Pool().Exec(ctx, `DROP TABLE photos;
CREATE TABLE photos (id bigint PRIMARY KEY, owner_id bigint, original_key text NOT NULL, processed_key text, thumbnail_key text, status text NOT NULL DEFAULT 'ready');
INSERT INTO photos (id, owner_id, original_key) SELECT i * 7, i % 7 + 1, 'uploaded/job' || i || '.jpg' FROM generate_series(1, 2500) i`)
	require.NoError(t, err)

	collect := func(page func(after string) ([]ledger.Photo, error)) []string {
		var ids []string
		after := ""
		for {
			p, err := page(after)
			require.NoError(t, err)
			if len(p) == 0 {
				return ids
			}
			for _, ph := range p {
				ids = append(ids, ph.ID)
			}
			after = p[len(p)-1].ID
		}
	}
	ids := collect(func(after string) ([]ledger.Photo, error) { return env.Store.PhotoScanLegacy(ctx, after, 1000) })
	require.Equal(t, 2500, len(ids), "every row, once")
	require.Equal(t, "7", ids[0])
	require.Equal(t, "17500", ids[2499])

	sel, err := env.Store.NewSelector(ctx, &ledger.Selection{Owners: []string{"3"}, SamplePercent: 50})
	require.NoError(t, err)
	ids = collect(func(after string) ([]ledger.Photo, error) { return sel.Scan(ctx, env.Store, after, 100) })
	var want int
	for i := 1; i <= 2500; i++ {
		if i%7+1 == 3 && ledger.SampleBucket(itoa(7*i)) < 5000 {
			want++
		}
	}
	require.Equal(t, want, len(ids), "owner 3's photos in the 50% sample, integer ids hashed as text")
	among, err := sel.Among(ctx, env.Store, []string{"14", "63", "112", "119"})
	require.NoError(t, err)
	for _, p := range among {
		require.Equal(t, "3", *p.OwnerID)
	}
}

func itoa(i int) string {
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
