package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/bench"
	"github.com/keymigrate/keymigrate/internal/config"
	"github.com/keymigrate/keymigrate/internal/connect"
)

func (a *app) benchCmd() *cobra.Command {
	var concurrency int
	cmd := &cobra.Command{
		Use:    "bench-report",
		Short:  "After a benchmark run: the fleet's rates beside a raw CopyObject loop on the same objects",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(connect.Options{Need: config.Need{DB: true, Bucket: true}, MaxConns: 2}, func(ctx context.Context, deps *connect.Deps, _ *zap.Logger) error {
				f, err := bench.ReadFleet(ctx, deps.Store)
				if err != nil {
					return err
				}
				n, d, err := bench.RawCopy(ctx, deps.Store, deps.Objects, "bench-raw/", concurrency)
				if err != nil {
					return err
				}
				raw := float64(n) / d.Seconds()
				fmt.Printf("fleet:      %d photos, %d verified object moves in %s\n", f.Photos, f.Objects, f.Elapsed.Round(10e6))
				fmt.Printf("            %.0f photos/s, %.0f verified moves/s\n", f.PhotosPerSec(), f.MovesPerSec())
				fmt.Printf("raw loop:   %d CopyObject calls, %d at a time, in %s: %.0f copies/s\n", n, concurrency, d.Round(10e6), raw)
				fmt.Printf("ratio:      verified moves/s ÷ raw copies/s = %.2f (target ≥ 0.50)\n", f.MovesPerSec()/raw)
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&concurrency, "concurrency", 32, "concurrency of the raw loop: the fleet's total")
	return cmd
}
