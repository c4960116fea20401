// Package bench measures the fleet against the fastest thing that could move
// the same objects: a plain CopyObject loop with the same concurrency on the
// same server, run right after it. Only the ratio is meaningful on a shared
// machine; see deploy/local/bench.sh.
package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/ledger"
	"github.com/keymigrate/keymigrate/internal/objstore"
)

// Fleet is what the workers achieved, read from the ledger.
type Fleet struct {
	Photos  int64
	Objects int64
	Elapsed time.Duration
}

// PhotosPerSec is the fleet's photo rate.
func (f Fleet) PhotosPerSec() float64 { return float64(f.Photos) / f.Elapsed.Seconds() }

// MovesPerSec is the fleet's rate of verified object moves.
func (f Fleet) MovesPerSec() float64 { return float64(f.Objects) / f.Elapsed.Seconds() }

// ReadFleet measures the fleet from the first photo a worker started to the
// last one it finished, so process start-up and the final drain polls do not
// count against it.
func ReadFleet(ctx context.Context, st *ledger.Store) (Fleet, error) {
	var f Fleet
	var first, last time.Time
	err := st.Pool().QueryRow(ctx, `
SELECT count(*), min(started_at), max(greatest(swapped_at, archived_at))
  FROM keymigrate.photo_moves WHERE state IN ('migrated', 'archived')`).Scan(&f.Photos, &first, &last)
	if err != nil {
		return f, fmt.Errorf("read fleet timing: %w", err)
	}
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM keymigrate.object_moves WHERE committed_at IS NOT NULL`).Scan(&f.Objects); err != nil {
		return f, fmt.Errorf("count moved objects: %w", err)
	}
	f.Elapsed = last.Sub(first)
	if f.Elapsed <= 0 {
		return f, fmt.Errorf("no finished photos in the ledger")
	}
	return f, nil
}

// RawCopy copies every moved object's legacy source to prefix+key with a plain
// CopyObject and no checks, with concurrency goroutines, and returns the rate.
func RawCopy(ctx context.Context, st *ledger.Store, objects *objstore.Store, prefix string, concurrency int) (int, time.Duration, error) {
	rows, err := st.Pool().Query(ctx, `SELECT old_key FROM keymigrate.object_moves WHERE committed_at IS NOT NULL ORDER BY new_key`)
	if err != nil {
		return 0, 0, fmt.Errorf("read moved objects: %w", err)
	}
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return 0, 0, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	client, bucket := objects.Client(), objects.Bucket()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, k := range keys {
		g.Go(func() error {
			_, err := client.CopyObject(gctx, &s3.CopyObjectInput{
				Bucket: &bucket, Key: aws.String(prefix + k), CopySource: aws.String(bucket + "/" + k),
			})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, 0, fmt.Errorf("raw copy loop: %w", err)
	}
	return len(keys), time.Since(start), nil
}
