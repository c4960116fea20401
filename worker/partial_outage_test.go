package worker_test

// Issue 18: a partial S3 outage, in which reads (HEAD, GET, LIST) answer but
// every write (CopyObject, UploadPartCopy, PutObject, the multipart calls)
// fails, is an outage too: it must dead-letter nothing and spend no receive,
// however long it lasts. A gate whose probe only reads would find S3 up every
// probe interval, take the photos again and again, and each photo's ledger
// attempts would climb past the outage exemption (maxOutageAttempts), after
// which its failures spend receives and the photo is dead-lettered as broken.

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/faultproxy"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger/ledgertest"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// writeOps are the S3 operations a partial outage fails: every one that
// writes an object. Reads keep answering.
var writeOps = []faultproxy.Op{
	faultproxy.OpCopyObject, faultproxy.OpUploadPartCopy, faultproxy.OpPutObject,
	faultproxy.OpCreateMultipartUpload, faultproxy.OpUploadPart, faultproxy.OpCompleteMultipartUpload,
}

// partialOutage is how long the writes fail: with outageCfg's hand-back
// delay (0.5 to 1 s) and probe interval (0.5 s), a gate that reopened at every
// probe would give each photo well over maxOutageAttempts (30) deliveries in
// this time, and then its two receives (MaxReceiveCount 2, released after 1
// and 2 s).
const partialOutage = 40 * time.Second

// maxAttemptsInPartialOutage bounds a photo's ledger attempts (one per
// delivery begun, plus one per in-worker retry) over the whole test: those of
// the deliveries taken before the gate closed (at most a few: three failures
// in a row close it, each photo retried in-worker for at most
// RetryMaxElapsed, 0.3 s), and the one after recovery that migrates it. A
// gate that reopens at every probe gives a photo about one a second.
const maxAttemptsInPartialOutage = 8

func TestCopiesFailingWhileReadsAnswerDeadLetterNothing(t *testing.T) {
	for _, c := range []struct {
		name  string
		rates faultproxy.Rates
	}{
		{"503 SlowDown", faultproxy.Rates{SlowDown: 1, Ops: writeOps}},
		{"connection reset", faultproxy.Rates{ResetBefore: 1, Ops: writeOps}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := setup(t, testenv.Options{MaxReceiveCount: 2})
			var photos []fixture
			for range 4 {
				f := b.legacyPhoto()
				photos = append(photos, f)
				b.send(f.ID, "run-1")
			}
			proxy, err := faultproxy.New(os.Getenv("AWS_ENDPOINT_URL_S3"), faultproxy.Plan{}, 18)
			require.NoError(t, err)
			require.NoError(t, proxy.Start("127.0.0.1:0"))
			t.Cleanup(func() { _ = proxy.Close() })
			client := s3.NewFromConfig(b.env.AWS, func(o *s3.Options) {
				o.UsePathStyle = true
				o.BaseEndpoint = func(s string) *string { return &s }(proxy.URL())
			})
			objects := objstore.New(client, b.env.Name, objstore.Options{})
			// The fleet already knows the server (its probe writes, and
			// would fail in the outage).
			_, err = objects.ResolveDestinationCheck(context.Background())
			require.NoError(t, err)
			w := b.workerWith(objects, outageCfg())

			proxy.SetPlan(faultproxy.Plan{Base: c.rates})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			outage := time.After(partialOutage)
			deadline := time.Now().Add(partialOutage + 30*time.Second)
			var over bool
			for b.migratedCount() < len(photos) && time.Now().Before(deadline) {
				select {
				case <-outage:
					if !over {
						over = true
						t.Logf("writes failed for %s: requests %v, faults %v", partialOutage, proxy.Counts().Requests, proxy.Counts().Faults)
						proxy.SetPlan(faultproxy.Plan{})
					}
				case <-time.After(200 * time.Millisecond):
				}
				require.Zero(t, ledgertest.Count(ledgertest.Failures(t, b.env.Store), func(f ledgertest.Failure) bool { return f.Permanent }),
					"a photo was dead-lettered during a partial S3 outage: %+v", ledgertest.Failures(t, b.env.Store))
			}
			cancel()
			require.NoError(t, <-done)
			require.True(t, over, "the photos were migrated while every write failed")

			var attempts []int
			for _, f := range photos {
				b.requireMigrated(f)
				m := ledgertest.PhotoMoveOf(t, b.env.Store, f.ID)
				attempts = append(attempts, m.Attempts)
				require.LessOrEqual(t, m.Attempts, maxAttemptsInPartialOutage,
					"photo %s was taken %d times during the outage: the gate kept reopening", f.ID, m.Attempts)
			}
			t.Logf("ledger attempts per photo: %v; CopyObject requests in all: %d", attempts, proxy.Counts().Requests[faultproxy.OpCopyObject])
			require.Empty(t, b.dlqMessages(), "a partial outage dead-letters nothing")
			failures := ledgertest.Failures(t, b.env.Store)
			require.Empty(t, failures, "a partial outage spends no receive: every failure was handed back as an outage")
		})
	}
}
