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
// server, for a photo with metadata (five objects) and one without (four).
// Every request here is either a read that pins what is copied, the copy
// itself, or the check that keeps bytes keymigrate did not write; one more
// is a regression (issue 12: requests per object bound a fleet far from S3).
func TestAMoveCostsTheRequestsItShould(t *testing.T) {
	for _, check := range []objstore.DestinationCheck{objstore.DestinationAuto, objstore.DestinationConditional} {
		for _, meta := range []bool{true, false} {
			name := string(check)
			if !meta {
				name += ", no metadata"
			}
			t.Run(name, func(t *testing.T) {
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

				f := b.legacyPhotoWith(meta, true)
				b.send(f.ID, "run-1")
				before := proxy.Counts()
				run()
				after := proxy.Counts()
				b.requireMigrated(f)

				got := map[faultproxy.Op]int64{}
				for op, n := range after.Requests {
					if d := n - before.Requests[op]; d != 0 {
						got[op] = d
					}
				}
				caps := counted.Capabilities()
				t.Logf("one photo, %d objects, capabilities %+v: %v", len(f.legacyKeys()), caps, got)
				want := wantRequests(caps, meta)
				require.Equal(t, want, got, "capabilities %+v", caps)
			})
		}
	}
}

// wantRequests is what TestAMoveCostsTheRequestsItShould expects of a photo
// with its three columns' objects, one animation, and metadata if meta.
//
// Where the server keeps every header on a copy and the bucket has no ACLs,
// an object the row names or the listing found is copied first and proven
// by the read of its source made after the copy, which is also the recheck
// before the swap: a copy and a HEAD. The metadata is read with the listing,
// not copied first: a HEAD, which finds a missing one (no copy, no intent),
// and, where it exists, its copy pinned to that HEAD, proven by its own
// response, with no read after it (issue 20: a copy of a missing metadata
// answered NoSuchKey, a failed COPY where a HEAD finds the same). A HEAD of
// the destination first where the server does not enforce conditional
// copies (the metadata's only once its HEAD found it: a photo without
// metadata has no destination to protect).
// Elsewhere (a copy may drop headers, or ACLs apply) the plan HEADs the
// metadata, every other source is read before its copy (the metadata's copy
// is pinned to the plan's HEAD), and a copy that may drop headers is read
// back; the source's ACL where ACLs apply. Per photo: the listing of its
// animations.
func wantRequests(caps objstore.Capabilities, meta bool) map[faultproxy.Op]int64 {
	n := int64(4) // objects moved
	if meta {
		n = 5
	}
	want := map[faultproxy.Op]int64{faultproxy.OpHeadObject: n, faultproxy.OpCopyObject: n, faultproxy.OpListObjectsV2: 1}
	if caps.CopyKeepsHeaders && !caps.ACLs {
		if !meta {
			want[faultproxy.OpHeadObject]++ // the HEAD that found no metadata
		}
		if !caps.ConditionalCopy {
			want[faultproxy.OpHeadObject] += n // every destination copied to, no other
		}
		return want
	}
	want[faultproxy.OpHeadObject] += 1 + 4 // the plan's metadata HEAD; the other sources, before their copies
	if !caps.ConditionalCopy {
		want[faultproxy.OpHeadObject] += n
	}
	if !caps.CopyKeepsHeaders {
		want[faultproxy.OpHeadObject] += n
	}
	if caps.ACLs {
		want[faultproxy.OpGetObjectAcl] = n
	}
	return want
}
