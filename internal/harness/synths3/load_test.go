package synths3

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// loaded is a database filled by Load, and the endpoint for the same
// keyspace.
type loaded struct {
	*endpoint
	url string
	res LoadResult
}

func load(t *testing.T, cfg Config, state State, o LoadOptions) *loaded {
	t.Helper()
	url := testenv.NewDatabase(t)
	mode := Legacy
	if state == FinishedState {
		mode = Migrated
	}
	e := startEndpoint(t, cfg, Options{Mode: mode})
	o.State, o.Bucket = state, e.bucket
	res, err := Load(context.Background(), url, e.ks, o)
	require.NoError(t, err)
	t.Logf("loaded %s: %v", state, res.Seconds)
	return &loaded{endpoint: e, url: url, res: res}
}

func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// photoRow is a photos row as text.
type photoRow struct {
	ID                   string
	Owner                *string
	Original             string
	Processed, Thumbnail *string
	Status               string
	CreatedAt            time.Time
}

func photoRows(t testing.TB, c *pgx.Conn) map[string]photoRow {
	t.Helper()
	rows, err := c.Query(context.Background(), `SELECT id::text, owner_id::text, original_key, processed_key, thumbnail_key, status, created_at FROM photos`)
	require.NoError(t, err)
	out := map[string]photoRow{}
	for rows.Next() {
		var r photoRow
		require.NoError(t, rows.Scan(&r.ID, &r.Owner, &r.Original, &r.Processed, &r.Thumbnail, &r.Status, &r.CreatedAt))
		r.CreatedAt = r.CreatedAt.UTC()
		out[r.ID] = r
	}
	require.NoError(t, rows.Err())
	return out
}

// expectedRow is photo p's row in state.
func expectedRow(p Photo, state State) photoRow {
	r := photoRow{ID: p.ID, Owner: ptr(p.OwnerID), Original: p.OriginalKey, Processed: ptr(p.ProcessedKey), Thumbnail: ptr(p.ThumbnailKey), Status: "ready", CreatedAt: p.CreatedAt}
	if state == FinishedState {
		if p.OwnerID == "" {
			r.Status = "archived"
			return r
		}
		for _, o := range p.Objects {
			switch o.Slot {
			case SlotOriginal:
				r.Original = o.UserKey
			case SlotRestored:
				r.Processed = ptr(o.UserKey)
			case SlotThumbnail:
				r.Thumbnail = ptr(o.UserKey)
			}
		}
	}
	return r
}

func TestTheLegacyLoadIsTheKeyspacesRows(t *testing.T) {
	t.Parallel()
	for _, idType := range []IDType{IDBigint, IDUUID} {
		t.Run(string(idType), func(t *testing.T) {
			t.Parallel()
			l := load(t, Config{Photos: 2000, IDType: idType}, LegacyState, LoadOptions{Chunk: 700})
			c := connect(t, l.url)
			rows := photoRows(t, c)
			require.Len(t, rows, 2000)
			tot := l.ks.Totals()
			require.Equal(t, tot.Ownerless, l.res.Ownerless)
			for i := range l.ks.Photos() {
				p := l.ks.Photo(i)
				require.Equal(t, expectedRow(p, LegacyState), rows[p.ID], "photo %d", i)
				for _, k := range []string{p.OriginalKey, p.ProcessedKey, p.ThumbnailKey} {
					if k != "" {
						_, err := keylayout.ParseLegacy(k)
						require.NoError(t, err)
					}
				}
			}
			var ledgerRows int
			require.NoError(t, c.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM keymigrate.photo_moves) + (SELECT count(*) FROM keymigrate.object_moves) + (SELECT count(*) FROM keymigrate.runs)`).Scan(&ledgerRows))
			require.Zero(t, ledgerRows, "no ledger before the migration")
			var indexes int
			require.NoError(t, c.QueryRow(context.Background(), `SELECT count(*) FROM pg_indexes WHERE tablename = 'photos'`).Scan(&indexes))
			require.Equal(t, 1, indexes, "the primary key was rebuilt")
		})
	}
}

// objectMove is an object_moves row.
type objectMove struct {
	NewKey, PhotoID, Kind, OldKey                                string
	Size                                                         int64
	SourceETag, ETag, ChecksumAlgorithm, Checksum, VerifyMethod  *string
	ContentType, JobID                                           *string
	Copied, Verified, Committed                                  *time.Time
	Deleted, NewDeleted, Restored, Superseded, Intent, Discarded *time.Time
	DeleteETag, NotCarried                                       *string
}

const objectMoveColumns = `new_key, photo_id, kind, old_key, size, source_etag, etag, checksum_algorithm, checksum, verify_method,
       content_type, job_id, copied_at, verified_at, committed_at, deleted_at, new_deleted_at, restored_at, superseded_at,
       delete_intent_at, discarded_at, delete_etag, not_carried`

func objectMoves(t testing.TB, c *pgx.Conn) []objectMove {
	t.Helper()
	rows, err := c.Query(context.Background(), `SELECT `+objectMoveColumns+` FROM keymigrate.object_moves ORDER BY new_key`)
	require.NoError(t, err)
	var out []objectMove
	for rows.Next() {
		var m objectMove
		require.NoError(t, rows.Scan(&m.NewKey, &m.PhotoID, &m.Kind, &m.OldKey, &m.Size, &m.SourceETag, &m.ETag, &m.ChecksumAlgorithm, &m.Checksum, &m.VerifyMethod,
			&m.ContentType, &m.JobID, &m.Copied, &m.Verified, &m.Committed, &m.Deleted, &m.NewDeleted, &m.Restored, &m.Superseded,
			&m.Intent, &m.Discarded, &m.DeleteETag, &m.NotCarried))
		out = append(out, m)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestTheFinishedLoadAgreesWithTheEndpointObjectForObject(t *testing.T) {
	t.Parallel()
	// The id type changes the keys, not the objects: fewer photos suffice
	// for the second (every row is read back through the SDK).
	for idType, photos := range map[IDType]int64{IDBigint: 2000, IDUUID: 500} {
		t.Run(string(idType), func(t *testing.T) {
			t.Parallel()
			l := load(t, Config{Photos: photos, IDType: idType}, FinishedState, LoadOptions{Chunk: 700})
			ctx := context.Background()
			c := connect(t, l.url)
			tot := l.ks.Totals()
			require.Equal(t, tot.Moves, l.res.ObjectMoves)

			rows := photoRows(t, c)
			require.Len(t, rows, int(photos))
			want := map[string]Object{}
			for i := range l.ks.Photos() {
				p := l.ks.Photo(i)
				require.Equal(t, expectedRow(p, FinishedState), rows[p.ID], "photo %d", i)
				for _, o := range p.Objects {
					if o.UserKey != "" {
						want[o.UserKey] = o
					}
				}
			}

			moves := objectMoves(t, c)
			require.Len(t, moves, len(want))
			st := l.objects()
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(16)
			for _, m := range moves {
				o, ok := want[m.NewKey]
				require.True(t, ok, "an object_moves row for %s, which the keyspace does not move", m.NewKey)
				require.Equal(t, o.LegacyKey, m.OldKey)
				require.Equal(t, string(o.Kind), m.Kind)
				require.Equal(t, o.Size, m.Size)
				require.Equal(t, o.ETag, *m.SourceETag)
				require.Equal(t, o.ETag, *m.ETag, "a single-part copy keeps its source's ETag")
				require.Equal(t, "CRC64NVME", *m.ChecksumAlgorithm)
				require.Equal(t, o.ContentType, *m.ContentType)
				l, err := keylayout.ParseLegacy(m.OldKey)
				require.NoError(t, err)
				require.Equal(t, l.JobID, *m.JobID)
				require.NotNil(t, m.Copied)
				require.NotNil(t, m.Verified)
				require.NotNil(t, m.Committed)
				require.True(t, !m.Copied.After(*m.Verified) && m.Verified.Equal(*m.Committed))
				require.Nil(t, m.Deleted)
				require.Nil(t, m.Superseded)
				require.Nil(t, m.NotCarried)
				g.Go(func() error {
					// What verify and cleanup read: the new copy as recorded, the
					// legacy object with the ETag the copy was made from.
					dst, err := st.Head(gctx, m.NewKey)
					if err != nil {
						return err
					}
					if ok, why := objstore.MatchesRecord(dst, objstore.Record{Size: m.Size, ETag: *m.ETag, Algorithm: *m.ChecksumAlgorithm, Checksum: *m.Checksum}); !ok {
						return fmt.Errorf("%s: %s", m.NewKey, why)
					}
					if dst.ETag != *m.ETag || dst.Checksums["CRC64NVME"] != *m.Checksum {
						return fmt.Errorf("%s: HEAD says %s %v, the ledger %s %s", m.NewKey, dst.ETag, dst.Checksums, *m.ETag, *m.Checksum)
					}
					src, err := st.Head(gctx, m.OldKey)
					if err != nil {
						return err
					}
					if src.Size != m.Size || src.ETag != *m.SourceETag {
						return fmt.Errorf("%s: HEAD says %d %s, the ledger %d %s", m.OldKey, src.Size, src.ETag, m.Size, *m.SourceETag)
					}
					return nil
				})
			}
			require.NoError(t, g.Wait())

			var migrated, archived, derived, runs int64
			require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'migrated'), count(*) FILTER (WHERE state = 'archived'),
       count(*) FILTER (WHERE new_derived), (SELECT count(*) FROM keymigrate.runs WHERE finished_at IS NOT NULL AND found = $1)
  FROM keymigrate.photo_moves`, photos).Scan(&migrated, &archived, &derived, &runs))
			require.Equal(t, photos-tot.Ownerless, migrated)
			require.Equal(t, tot.Ownerless, archived)
			require.Equal(t, migrated, derived)
			require.EqualValues(t, 1, runs)

			// The indexes are back, as the ledger's migrations define them.
			fresh := testenv.NewDatabase(t)
			require.NoError(t, migrateLedger(ctx, fresh))
			require.Equal(t, indexDefs(t, connect(t, fresh)), indexDefs(t, c))
		})
	}
}

// indexDefs are the definitions of the ledger's indexes.
func indexDefs(t testing.TB, c *pgx.Conn) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), `SELECT indexdef FROM pg_indexes WHERE schemaname = 'keymigrate' ORDER BY indexname`)
	require.NoError(t, err)
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, defs)
	return defs
}

func TestThePhotosTableCanLiveInAnotherSchema(t *testing.T) {
	t.Parallel()
	l := load(t, Config{Photos: 100}, LegacyState, LoadOptions{Schema: "app"})
	c := connect(t, l.url)
	var n int
	require.NoError(t, c.QueryRow(context.Background(), `SELECT count(*) FROM app.photos`).Scan(&n))
	require.Equal(t, 100, n)
	var public bool
	require.NoError(t, c.QueryRow(context.Background(), `SELECT to_regclass('public.photos') IS NOT NULL`).Scan(&public))
	require.False(t, public)
}
