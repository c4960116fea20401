package worker_test

import (
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// TestAMoveCostsTheRequestsItShould counts, through the counting proxy, the S3
// requests one photo's migration makes, for each way the fleet can find the
// server. Every request here is either a read that pins what is copied, the
// copy itself, or the check that keeps bytes keymigrate did not write; one
// more is a regression (issue 12: requests per object bound a fleet far from
// S3).
func TestAMoveCostsTheRequestsItShould(t *testing.T) {
	for _, check := range []objstore.DestinationCheck{objstore.DestinationAuto, objstore.DestinationConditional} {
		t.Run(string(check), func(t *testing.T) {
			b := setup(t, testenv.Options{})
			proxy, err := faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), faultproxy.Plan{}, 1)
			require.NoError(t, err)
			require.NoError(t, proxy.Start("127.0.0.1:0"))
			t.Cleanup(func() { _ = proxy.Close() })
			client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
				o.UsePathStyle = true
				o.BaseEndpoint = func(s string) *string { return &s }(proxy.URL())
			})
			counted := objstore.New(client, b.env.Name, objstore.Options{DestinationCheck: check})
			run := func() { b.drain(worker.New(b.env.Store, counted, b.env.Queue, b.env.DLQ, b.log, cfg())) }
			run() // the fleet's one probe of the server, not counted below

			f := b.legacyPhoto()
			b.send(f.ID, "run-1")
			before := proxy.Counts()
			run()
			after := proxy.Counts()
			b.requireMigrated(f)

			// Five objects (original, restored, thumbnail, metadata, one
			// animation). Where the server keeps every header on a copy and
			// the bucket has no ACLs, an object is copied first and proven by
			// the read of its source made after the copy, which is also the
			// recheck before the swap: a copy and a HEAD. The metadata keeps
			// the HEAD that found it (its copy is pinned to it) besides its
			// copy and recheck. A HEAD of the destination first where the
			// server does not enforce conditional copies. Elsewhere (a copy
			// may drop headers, or ACLs apply) every source is read before its
			// copy, and a copy that may drop headers is read back; the
			// source's ACL where ACLs apply. Per photo: the listing of its
			// animations.
			caps := counted.Capabilities()
			want := map[faultproxy.Op]int64{faultproxy.OpHeadObject: 1 + 5, faultproxy.OpCopyObject: 5, faultproxy.OpListObjectsV2: 1}
			if !caps.CopyKeepsHeaders || caps.ACLs {
				want[faultproxy.OpHeadObject] += 4 // the sources but the metadata's, before their copies
			}
			if !caps.ConditionalCopy {
				want[faultproxy.OpHeadObject] += 5
			}
			if !caps.CopyKeepsHeaders {
				want[faultproxy.OpHeadObject] += 5
			}
			if caps.ACLs {
				want[faultproxy.OpGetObjectAcl] = 5
			}
			got := map[faultproxy.Op]int64{}
			for op, n := range after.Requests {
				if d := n - before.Requests[op]; d != 0 {
					got[op] = d
				}
			}
			t.Logf("one photo, five objects, capabilities %+v: %v", caps, got)
			require.Equal(t, want, got, "capabilities %+v", caps)
		})
	}
}
