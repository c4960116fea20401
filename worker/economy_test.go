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
			// animation). Per object: a HEAD of its source (the metadata's is
			// the HEAD that found it), the copy, and the recheck of the source
			// before the swap; a HEAD of the destination first where the server
			// does not enforce conditional copies; a HEAD of the copy where a
			// copy may drop headers; the source's ACL where ACLs apply. Per
			// photo: the listing of its animations.
			caps := counted.Capabilities()
			want := map[faultproxy.Op]int64{faultproxy.OpHeadObject: 5 + 5, faultproxy.OpCopyObject: 5, faultproxy.OpListObjectsV2: 1}
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
			require.Equal(t, want, got, "capabilities %+v", caps)
		})
	}
}
