package inventory

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// TestParallelFilesYieldTheSerialRecords reads the data files of a report on
// several goroutines, and split into shards, and checks that together they
// yield exactly the records a serial Objects yields: none lost, none twice.
func TestParallelFilesYieldTheSerialRecords(t *testing.T) {
	t.Parallel()
	for _, format := range []Format{FormatCSV, FormatParquet} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			cfg := baseConfig(format)
			cfg.ObjectsPerFile = 333
			r := openLocal(t, writeReport(t, t.TempDir(), cfg, testObjects(3000)))
			files := r.Files()
			require.Len(t, files, 10)

			serial, err := readAllRecords(t, r)
			require.NoError(t, err)
			require.Len(t, serial, 3000)

			// Four goroutines take files from a channel.
			perFile := make([][]Object, len(files))
			work := make(chan int)
			g, ctx := errgroup.WithContext(context.Background())
			for range 4 {
				g.Go(func() error {
					for i := range work {
						if err := r.ReadFile(ctx, files[i], func(o Object) error {
							perFile[i] = append(perFile[i], o)
							return nil
						}); err != nil {
							return err
						}
					}
					return nil
				})
			}
			for i := range files {
				work <- i
			}
			close(work)
			require.NoError(t, g.Wait())
			var parallel []Object
			for _, objs := range perFile {
				parallel = append(parallel, objs...)
			}
			require.Equal(t, serial, parallel, "files read in parallel, put back in manifest order")

			// Three shards, each a process of its own in real use, by
			// file index modulo the shard count.
			const shards = 3
			seen := map[string]int{}
			var mu sync.Mutex
			var sg errgroup.Group
			for shard := range shards {
				sg.Go(func() error {
					for i, f := range files {
						if i%shards != shard {
							continue
						}
						if err := r.ReadFile(context.Background(), f, func(o Object) error {
							mu.Lock()
							seen[o.Key]++
							mu.Unlock()
							return nil
						}); err != nil {
							return err
						}
					}
					return nil
				})
			}
			require.NoError(t, sg.Wait())
			require.Len(t, seen, len(serial))
			for _, o := range serial {
				require.Equal(t, 1, seen[o.Key], o.Key)
			}
		})
	}
}
