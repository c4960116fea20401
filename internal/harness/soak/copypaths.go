package soak

import (
	"context"
	"fmt"

	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
)

// InvCopyPaths: each copy path the run was meant to soak moved something. A
// run with copy-first workers whose ledger records no object proven by the
// read of its source made after the copy did not soak copy first (the probe
// refused it, or the workers did not run as configured); a run without
// copy-first workers that records one started them by mistake.
const InvCopyPaths = "copy_paths"

// copyFirstMethod is what a copy-first move's verify_method ends with
// (worker.proveUnread): the copy's response, proven by the read of the source
// made after the copy landed.
const copyFirstMethod = "(copy response, source read after the copy)"

// probeCopyFirst asks the S3 server, as every worker's probe does, whether
// it allows copy first: it keeps every header on a copy and the bucket keeps
// no per-object ACLs (versitygw: yes; MinIO: no, its buckets keep ACLs). It
// probes with a store of its own, so the harness's store keeps its settings,
// before the application starts (the probe's objects, under users/, are
// gone again by then).
func (r *Runner) probeCopyFirst(ctx context.Context) {
	caps, err := objstore.New(r.env.S3, r.env.Objects.Bucket(), objstore.Options{}).Probe(ctx)
	if err != nil {
		r.note("copy paths: the S3 probe failed (%v): copy first is taken to be possible", err)
		r.copyFirstPossible = true
		return
	}
	r.copyFirstPossible = caps.CopyKeepsHeaders && !caps.ACLs
	r.copyCaps = fmt.Sprintf("%+v", caps)
}

// checkCopyPaths counts the committed object moves of the ledger by the path
// that proved them, and checks the count against the run's copy-first mode.
// rep.CopyPaths gets copy_first_objects/_photos (proven after the copy,
// without a read first) and careful_objects/_photos (every other committed
// move: the careful path's, on careful workers and on copy-first workers that
// fell back to it).
func (r *Runner) checkCopyPaths(ctx context.Context, rep *Report) error {
	c, err := ledgertest.CountCopyPaths(ctx, r.env.Store, copyFirstMethod)
	if err != nil {
		return err
	}
	cfObjects, cfPhotos, carefulObjects, carefulPhotos := c.CopyFirstObjects, c.CopyFirstPhotos, c.CarefulObjects, c.CarefulPhotos
	rep.CopyPaths = map[string]int{
		"copy_first_objects": cfObjects, "copy_first_photos": cfPhotos,
		"careful_objects": carefulObjects, "careful_photos": carefulPhotos,
		"copy_first_possible": 0,
	}
	if r.copyFirstPossible {
		rep.CopyPaths["copy_first_possible"] = 1
	}
	paths, err := CopyPaths(r.cfg.CopyFirst)
	if err != nil {
		return err
	}
	started := r.fleet.Counts().StartedByPath
	for _, p := range paths {
		if p == PathCopyFirst && cfObjects == 0 && !r.copyFirstPossible {
			// Not a violation: the server does not allow it, and each
			// worker's probe says so; the report says it was not soaked.
			rep.Notes = append(rep.Notes, fmt.Sprintf("copy paths: copy first is off on this server (probe: %s): its %d copy-first workers took the careful path, copy first was not soaked", r.copyCaps, started[PathCopyFirst]))
			continue
		}
		if p == PathCopyFirst && cfObjects == 0 {
			r.violate(Violation{Invariant: InvCopyPaths, Detail: fmt.Sprintf(
				"copy-first mode %q started %d copy-first workers on a server that allows copy first (probe: %s), but no committed move was proven by the read of its source after the copy (verify_method \"… %s\"): copy first was not soaked (%d moves took the careful path)",
				r.cfg.CopyFirst, started[PathCopyFirst], r.copyCaps, copyFirstMethod, carefulObjects)})
		}
		if p == PathCareful && carefulObjects == 0 {
			r.violate(Violation{Invariant: InvCopyPaths, Detail: fmt.Sprintf(
				"copy-first mode %q started %d careful workers, but every committed move (%d) was proven after an unread copy: the careful path was not soaked",
				r.cfg.CopyFirst, started[PathCareful], cfObjects)})
		}
	}
	if len(paths) == 1 && paths[0] == PathCareful && cfObjects > 0 {
		r.violate(Violation{Invariant: InvCopyPaths, Detail: fmt.Sprintf(
			"copy-first mode %q runs careful workers only (--copy-first=false, the multipart threshold lowered), yet %d committed moves of %d photos were proven after an unread copy",
			r.cfg.CopyFirst, cfObjects, cfPhotos)})
	}
	return nil
}
