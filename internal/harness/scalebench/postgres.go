package scalebench

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// PGWork is what the database did during a phase, from its cumulative
// statistics (pg_stat_database, pg_stat_user_tables): the difference of two
// snapshots. Transactions stand for statements (the commands run most
// statements outside explicit transactions); FullScans counts sequential
// scans of the tables that grow with the bucket.
type PGWork struct {
	Transactions int64            `json:"transactions"`
	RowsReturned int64            `json:"rows_returned"`
	RowsFetched  int64            `json:"rows_fetched"`
	BlocksRead   int64            `json:"blocks_read"`
	BlocksHit    int64            `json:"blocks_hit"`
	TempBytes    int64            `json:"temp_bytes"`
	FullScans    map[string]int64 `json:"full_scans"`
}

func (a PGWork) minus(b PGWork) PGWork {
	out := PGWork{
		Transactions: a.Transactions - b.Transactions, RowsReturned: a.RowsReturned - b.RowsReturned,
		RowsFetched: a.RowsFetched - b.RowsFetched, BlocksRead: a.BlocksRead - b.BlocksRead,
		BlocksHit: a.BlocksHit - b.BlocksHit, TempBytes: a.TempBytes - b.TempBytes, FullScans: map[string]int64{},
	}
	for t, n := range a.FullScans {
		if d := n - b.FullScans[t]; d != 0 {
			out.FullScans[t] = d
		}
	}
	return out
}

// bigTables grow with the bucket: a phase that scans one whole is a pass
// over 10^9 rows at scale.
var bigTables = []string{"photos", "photo_moves", "object_moves", "inventory_objects"}

type database struct {
	admin, name, url string
}

func createDatabase(ctx context.Context, admin, name string) (*database, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, fmt.Errorf("connect to the admin database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + name
	return &database{admin: admin, name: name, url: u.String()}, nil
}

func (d *database) drop() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
}

// work snapshots the database's statistics. The commands' backends flush
// theirs when they exit; the pause lets the last ones finish exiting.
func (d *database) work(ctx context.Context) (PGWork, error) {
	time.Sleep(700 * time.Millisecond)
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return PGWork{}, fmt.Errorf("connect to %s: %w", d.name, err)
	}
	defer conn.Close(ctx)
	var w PGWork
	err = conn.QueryRow(ctx, `
SELECT xact_commit + xact_rollback, tup_returned, tup_fetched, blks_read, blks_hit, temp_bytes
  FROM pg_stat_database WHERE datname = current_database()`).Scan(
		&w.Transactions, &w.RowsReturned, &w.RowsFetched, &w.BlocksRead, &w.BlocksHit, &w.TempBytes)
	if err != nil {
		return w, fmt.Errorf("read pg_stat_database: %w", err)
	}
	w.FullScans = map[string]int64{}
	rows, err := conn.Query(ctx, `SELECT relname, coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = ANY($1)`, bigTables)
	if err != nil {
		return w, fmt.Errorf("read pg_stat_user_tables: %w", err)
	}
	for rows.Next() {
		var t string
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return w, err
		}
		w.FullScans[t] = n
	}
	return w, rows.Err()
}

// addApplicationIndexes builds the indexes docs/guarantees.md asks the
// application team for (cleanup finds a job's rows through them), as a
// production database has them.
func (d *database) addApplicationIndexes(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", d.name, err)
	}
	defer conn.Close(ctx)
	for _, idx := range append(ledger.ApplicationIndexes, "ANALYZE photos") {
		if _, err := conn.Exec(ctx, idx); err != nil {
			return fmt.Errorf("%s: %w", idx, err)
		}
	}
	return nil
}
