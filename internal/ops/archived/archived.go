// Package archived reports the photos the migration set aside because they
// have no owner, as CSV for manual review: their keys, the size of each object
// (read from S3 now) and when they were created and archived.
package archived

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Header is the CSV header.
var Header = []string{"photo_id", "status", "original_key", "original_size", "processed_key", "processed_size",
	"thumbnail_key", "thumbnail_size", "created_at", "archived_at"}

// Write streams the report to w and returns the number of photos. A missing
// object shows as size "missing".
func Write(ctx context.Context, st *ledger.Store, objects *objstore.Store, w io.Writer) (int, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(Header); err != nil {
		return 0, err
	}
	n := 0
	after := ""
	for {
		batch, err := st.PhotoScanArchived(ctx, after, 200)
		if err != nil {
			return n, err
		}
		if len(batch) == 0 {
			break
		}
		records := make([][]string, len(batch))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for i, p := range batch {
			g.Go(func() error {
				rec, err := record(gctx, objects, p)
				records[i] = rec
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return n, err
		}
		if err := cw.WriteAll(records); err != nil {
			return n, err
		}
		n += len(batch)
		after = batch[len(batch)-1].ID
	}
	cw.Flush()
	return n, cw.Error()
}

func record(ctx context.Context, objects *objstore.Store, p ledger.ArchivedPhoto) ([]string, error) {
	size := func(k *string) (string, string, error) {
		if k == nil {
			return "", "", nil
		}
		i, err := objects.Head(ctx, *k)
		if errors.Is(err, objstore.ErrNotFound) {
			return *k, "missing", nil
		}
		if err != nil {
			return "", "", fmt.Errorf("photo %s: %w", p.ID, err)
		}
		return *k, strconv.FormatInt(i.Size, 10), nil
	}
	ok, os, err := size(&p.Original)
	if err != nil {
		return nil, err
	}
	pk, ps, err := size(p.Processed)
	if err != nil {
		return nil, err
	}
	tk, ts, err := size(p.Thumbnail)
	if err != nil {
		return nil, err
	}
	status := ""
	if p.Status != nil {
		status = *p.Status
	}
	archivedAt := ""
	if p.ArchivedAt != nil {
		archivedAt = p.ArchivedAt.UTC().Format(time.RFC3339)
	}
	return []string{p.ID, status, ok, os, pk, ps, tk, ts, p.CreatedAt.UTC().Format(time.RFC3339), archivedAt}, nil
}
