package plan_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/plan"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/worker"
)

// TestTheEstimateCountsTheRequestsTheWorkersMake plans a bucket whose photos'
// objects are known (with and without metadata, with none, one or two
// animations, and on the careful path one multipart-sized object), then
// migrates exactly those photos with a worker whose S3 requests go through
// the counting proxy of worker's TestAMoveCostsTheRequestsItShould, and
// requires the estimate's S3 requests, operation by operation, to be the
// ones counted (issue 20: the plan counted a read-back of every copy and the
// metadata's HEAD twice, and none of the copy-first path's copies of missing
// metadata). The fleet's one probe of the server is not counted.
func TestTheEstimateCountsTheRequestsTheWorkersMake(t *testing.T) {
	for _, tc := range []struct {
		name      string
		copyFirst bool
		check     objstore.DestinationCheck
		multipart bool // a threshold of 5 MiB and one 6 MiB original (then never copied first)
	}{
		{"copy first, conditional copies", true, objstore.DestinationConditional, false},
		{"copy first, destination read first", true, objstore.DestinationHead, false},
		{"careful, conditional copies", false, objstore.DestinationConditional, false},
		{"careful, destination read first", false, objstore.DestinationHead, false},
		{"careful, with a multipart copy", false, objstore.DestinationConditional, true},
		{"copy first asked, threshold below 5 GiB", true, objstore.DestinationConditional, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eo := objstore.Options{DestinationCheck: tc.check}
			if tc.multipart {
				eo.MultipartThreshold, eo.PartSize = 5<<20, 5<<20
			}
			env := testenv.New(t, testenv.Options{Objects: eo})
			// meta, animations, size of the original
			photos := []struct {
				meta  bool
				anims int
				size  int
			}{{true, 1, 100}, {false, 1, 100}, {true, 0, 100}, {false, 2, 100}, {false, 0, 100}}
			if tc.multipart {
				photos = append(photos, struct {
					meta  bool
					anims int
					size  int
				}{true, 1, 6 << 20})
			}
			for i, p := range photos {
				id, owner, job := uuid.NewString(), uuid.NewString(), uuid.NewString()
				original := "uploaded/" + job + ".png"
				processed := "restored/" + job + "/" + uuid.NewString() + ".jpg"
				thumb := "thumbnails/" + job + ".jpg"
				env.Put(t, original, bytes.Repeat([]byte{byte(i)}, p.size), "image/png", nil)
				env.Put(t, processed, []byte("processed "+job), "image/jpeg", nil)
				env.Put(t, thumb, []byte("thumbnail "+job), "image/jpeg", nil)
				if p.meta {
					env.Put(t, "meta/"+job+".json", []byte(`{"job":"`+job+`"}`), "application/json", nil)
				}
				for a := range p.anims {
					env.Put(t, fmt.Sprintf("animated/%s/%s_%d.mp4", job, uuid.NewString(), a), []byte("animation"), "video/mp4", nil)
				}
				env.InsertPhoto(t, id, &owner, original, &processed, &thumb)
			}

			r, err := plan.Run(context.Background(), env.Store, env.Objects, plan.Options{
				NoCopyFirst: !tc.copyFirst, DestinationHead: tc.check == objstore.DestinationHead,
				MultipartThreshold: eo.MultipartThreshold, PartSize: eo.PartSize,
			})
			require.NoError(t, err)
			require.EqualValues(t, len(photos), r.Photos.ToMigrate)
			if tc.multipart {
				require.EqualValues(t, 1, r.Copies.Multipart)
			}
			want := map[faultproxy.Op]int64{}
			for _, q := range r.Estimate.Requests {
				if q.Service == "s3" {
					want[faultproxy.Op(q.Operation)] = q.Count
				}
			}

			proxy, err := faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), faultproxy.Plan{}, 1)
			require.NoError(t, err)
			require.NoError(t, proxy.Start("127.0.0.1:0"))
			t.Cleanup(func() { _ = proxy.Close() })
			client := s3.NewFromConfig(env.AWS, func(o *s3.Options) {
				o.UsePathStyle = true
				o.BaseEndpoint = func(s string) *string { return &s }(proxy.URL())
			})
			counted := objstore.New(client, env.Name, eo)
			c := worker.DefaultConfig()
			c.Concurrency, c.WaitTime, c.Drain, c.CopyFirst, c.RecheckSources = 4, time.Second, true, tc.copyFirst, true
			run := func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				require.NoError(t, worker.New(env.Store, counted, env.Queue, env.DLQ, zap.NewNop(), c).Run(ctx))
				require.NoError(t, ctx.Err(), "the worker did not drain in time")
			}
			run() // the fleet's one probe of the server, not counted below
			caps := counted.Capabilities()
			require.True(t, caps.CopyKeepsHeaders && !caps.ACLs, "the plan counts a server that keeps headers on a copy, without ACLs (AWS S3): %+v", caps)

			env.Enqueue(t)
			before := proxy.Counts()
			run()
			after := proxy.Counts()
			got := map[faultproxy.Op]int64{}
			for op, n := range after.Requests {
				// A verification that cannot decide from checksums (here a
				// multipart copy's) reads both objects: not estimated.
				if d := n - before.Requests[op]; d != 0 && op != faultproxy.OpGetObject {
					got[op] = d
				}
			}
			var left int64
			require.NoError(t, env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM photos WHERE original_key NOT LIKE 'users/%'`).Scan(&left))
			require.Zero(t, left, "every photo migrated")
			t.Logf("%d photos, %d copies: estimated %v, counted %v", r.Photos.ToMigrate, r.Copies.Objects, want, got)
			require.Equal(t, want, got)
		})
	}
}
