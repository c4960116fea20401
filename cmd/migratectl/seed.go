package main

import (
	"context"
	"fmt"
	"os"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/ops/seed"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

func (a *app) seedCmd() *cobra.Command {
	var o seed.Options
	var ifEmpty bool
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Create legacy demo photos: rows in Postgres and objects in S3 (development only)",
		Long: `seed creates N legacy photos in the development photos table (created if
missing) and their objects in the bucket: every photo has an original; most
have a restored image and a thumbnail; some have metadata JSON and 1-3
animations; about 5% have no owner; a few jobs have orphan restores that no row
references. Extensions, content types, user metadata, tags and checksum
algorithms vary. The same --seed gives the same data.

Never run it against a production database or bucket.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 4}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				if ifEmpty {
					n, err := seed.CountPhotos(ctx, deps.Store.Pool())
					if err != nil {
						return err
					}
					if n > 0 {
						fmt.Printf("seed: the photos table already has %d rows; nothing seeded (--if-empty)\n", n)
						return nil
					}
				}
				bar := progressbar.NewOptions(o.Photos, progressbar.OptionSetDescription("seeding photos"),
					progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
				o.Progress = func(done int) { _ = bar.Set(done) }
				res, err := seed.Run(ctx, deps.Store.Pool(), deps.Objects, o)
				_ = bar.Finish()
				if err != nil {
					return err
				}
				fmt.Printf("seeded %d photos (%d without an owner) with %d objects, %s: %d animations, %d metadata, %d orphan restores\n",
					res.Photos, res.Ownerless, res.Objects, humanize.IBytes(uint64(res.Bytes)), res.Animations, res.Metadata, res.Orphans)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Photos, "photos", 1000, "number of photos")
	f.IntVar(&o.Owners, "owners", 0, "number of distinct owners (default: photos/4)")
	f.IntVar(&o.Large, "large", 0, "number of photos whose original is --large-size bytes")
	b := config.NewBinder(f)
	b.Bytes(&o.LargeSize, "large-size", "", 64<<20, "size of the large originals")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed")
	f.IntVar(&o.Concurrency, "concurrency", 16, "concurrent uploads")
	f.BoolVar(&ifEmpty, "if-empty", false, "seed only if the photos table is empty or missing")
	return cmd
}
