// Package s3caps settles, once per fleet, which conditions the S3 server
// enforces (conditional copies, conditional deletes): the answer is kept in
// the ledger's control record, so that only the first process to need it
// writes probe objects, and a process killed mid-probe leaves at most a few
// tiny objects that the next probe removes.
package s3caps

import (
	"context"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Resolve applies the recorded capabilities of the store's bucket, probing the
// server (and recording the answer) if none are recorded. refresh probes even
// if an answer is recorded (migratectl setup does, after a server upgrade). On
// a probe error the safe answer (nothing enforced) is applied, not recorded,
// and the error returned for the caller to log.
func Resolve(ctx context.Context, st *ledger.Store, objects *objstore.Store, refresh bool) (objstore.Capabilities, error) {
	if !refresh {
		rec, ok, err := st.S3CapabilitiesGet(ctx, objects.Bucket())
		if err != nil {
			return objstore.Capabilities{}, err
		}
		if ok {
			c := objstore.Capabilities{ConditionalCopy: rec.ConditionalCopy, ConditionalDelete: rec.ConditionalDelete, ConditionalBatchDelete: rec.ConditionalBatchDelete, ACLs: rec.ACLs, CopyKeepsHeaders: rec.CopyKeepsHeaders}
			objects.SetCapabilities(c)
			return objects.Capabilities(), nil
		}
	}
	c, err := objects.Probe(ctx)
	objects.SetCapabilities(c)
	if err != nil {
		return objects.Capabilities(), err
	}
	if err := st.S3CapabilitiesSave(ctx, ledger.S3Capabilities{
		Bucket: objects.Bucket(), ConditionalCopy: c.ConditionalCopy, ConditionalDelete: c.ConditionalDelete, ConditionalBatchDelete: c.ConditionalBatchDelete, ACLs: c.ACLs, CopyKeepsHeaders: c.CopyKeepsHeaders,
	}); err != nil {
		return objects.Capabilities(), err
	}
	return objects.Capabilities(), nil
}
