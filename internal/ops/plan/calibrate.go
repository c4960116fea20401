package plan

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// sampler returns the photos a calibration copies: ledger.PlanSession's
// SamplePhotos, or their merge over the ranges of a split plan.
type sampler func(ctx context.Context) ([]ledger.SamplePhoto, error)

// ErrRunMigratedNothing is returned when the run the latency was to be read
// from (Options.CalibrateRun) migrated no photo.
var ErrRunMigratedNothing = errors.New("the ledger has no photo this run migrated, so no latency to read")

// calibration finds the per-photo latency: measured by a scratch copy when
// asked (Options.Calibrate), else read from the ledger of a previous run.
func calibration(ctx context.Context, st *ledger.Store, sample sampler, objects *objstore.Store, o Options) (Calibration, error) {
	if o.Calibrate > 0 {
		return scratchCopy(ctx, sample, objects, o)
	}
	l, err := st.RunMigrationLatency(ctx, o.CalibrateRun, 10000)
	if err != nil {
		return Calibration{}, err
	}
	if l.Photos == 0 {
		if o.CalibrateRun != "" {
			return Calibration{}, fmt.Errorf("calibrate from run %s: %w", o.CalibrateRun, ErrRunMigratedNothing)
		}
		return Calibration{Source: NotCalibrated, Note: "no photo migrated yet: pass --calibrate N (copies N photos' objects to a scratch prefix), or migrate a first stage and plan again"}, nil
	}
	return Calibration{Source: CalibratedFromLedger, Run: o.CalibrateRun, Photos: l.Photos, P50: l.P50, P90: l.P90,
		Occupancy: l.Occupancy, PeakInFlight: l.PeakInFlight,
		Note: "a worker's start on a photo to its swap, over photos the run migrated (the latest run that migrated any, unless --calibrate-run names one; S3, Postgres and the verification included)"}, nil
}

// scratchCopy does, for Calibrate photos to migrate, the S3 requests a worker
// does (HEAD of the metadata object, listing of the animations, then per
// object HEAD, CopyObject, HEAD of the copy, HEAD of the source again), with
// the copies going to a scratch prefix no user or legacy key can have, and
// deletes the copies afterwards. It never reads or writes the photos table or
// users/.
func scratchCopy(ctx context.Context, pick sampler, objects *objstore.Store, o Options) (Calibration, error) {
	cal := Calibration{Source: CalibratedByScratchCopy, Note: "S3 requests only (a worker also writes to Postgres and the queue), at the load of the moment: not a worker's per-photo time (on the local stack its p50 was 0.3× a worker's in two staged runs of three, 1.6× in the third under a load spike; docs/operating-plan-rollout-report.md, Duration): size a first stage with it, then plan again with --calibrate-run"}
	sample, err := pick(ctx)
	if err != nil {
		return cal, err
	}
	if len(sample) == 0 {
		cal.Source, cal.Note = NotCalibrated, "no photo to migrate has all its objects in a readable storage class: nothing to calibrate on"
		return cal, nil
	}
	prefix := o.ScratchPrefix + newPlanID() + "/"
	var mu sync.Mutex
	var written []string
	var latencies []float64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(min(o.Concurrency, len(sample)))
	for i, p := range sample {
		g.Go(func() error {
			start := time.Now()
			_, err := copyPhoto(gctx, objects, p, prefix+strconv.Itoa(i)+"/", o, func(k string) {
				mu.Lock()
				written = append(written, k)
				mu.Unlock()
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				cal.Failed++
				return nil
			}
			latencies = append(latencies, time.Since(start).Seconds())
			return nil
		})
	}
	err = g.Wait()
	deleted, derr := deleteScratch(ctx, objects, written)
	cal.Deleted = deleted
	if derr != nil {
		return cal, fmt.Errorf("calibration: delete the scratch copies under %s: %w (delete them by hand)", prefix, derr)
	}
	if err != nil {
		return cal, err
	}
	cal.Photos = int64(len(latencies))
	cal.P50, cal.P90 = percentile(latencies, 0.5), percentile(latencies, 0.9)
	if cal.Photos == 0 {
		cal.Source, cal.Note = NotCalibrated, fmt.Sprintf("every calibration copy failed (%d photos)", cal.Failed)
	}
	return cal, nil
}

func copyPhoto(ctx context.Context, objects *objstore.Store, p ledger.SamplePhoto, prefix string, o Options, wrote func(string)) (int, error) {
	keys := append([]string(nil), p.Keys...)
	if p.Job != "" {
		meta := keylayout.LegacyMetadataKey(p.Job)
		ok, err := objects.Exists(ctx, meta)
		if err != nil {
			return 0, err
		}
		if ok {
			keys = append(keys, meta)
		}
		anims, err := objects.List(ctx, keylayout.LegacyAnimationPrefix(p.Job))
		if err != nil {
			return 0, err
		}
		keys = append(keys, anims...)
	}
	for i, k := range keys {
		dst := prefix + strconv.Itoa(i)
		if o.DestinationHead {
			if _, err := objects.Exists(ctx, dst); err != nil {
				return i, err
			}
		}
		if !o.NoCopyFirst && objects.CopiesUnread() {
			// As a worker copies first: the copy, then the read of the
			// source that proves it and is the recheck.
			if _, err := objects.CopyUnread(ctx, k, dst); err != nil {
				return i, err
			}
			wrote(dst)
			if _, err := objects.Head(ctx, k); err != nil {
				return i, err
			}
			continue
		}
		src, err := objects.Head(ctx, k)
		if err != nil {
			return i, err
		}
		if _, err := objects.Copy(ctx, src, dst, ""); err != nil {
			return i, err
		}
		wrote(dst)
		if _, err := objects.Head(ctx, dst); err != nil {
			return i, err
		}
		if !o.NoSourceRecheck {
			if _, err := objects.Head(ctx, k); err != nil {
				return i, err
			}
		}
	}
	return len(keys), nil
}

// deleteScratch removes the calibration's copies, even when ctx was
// cancelled.
func deleteScratch(ctx context.Context, objects *objstore.Store, keys []string) (int64, error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var n int64
	for start := 0; start < len(keys); start += 1000 {
		batch := keys[start:min(start+1000, len(keys))]
		failed, err := objects.DeleteBatch(dctx, batch)
		if err != nil {
			return n, err
		}
		if len(failed) > 0 {
			for k, why := range failed {
				return n, fmt.Errorf("%d scratch objects not deleted, e.g. %s: %s", len(failed), k, why)
			}
		}
		n += int64(len(batch))
	}
	return n, nil
}

// percentile is the q-quantile of xs with linear interpolation (as Postgres's
// percentile_cont).
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(pos)
	if lo+1 >= len(s) {
		return s[lo]
	}
	return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
}
