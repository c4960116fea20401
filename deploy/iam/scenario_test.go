package iam

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/harness/invtest"
	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/ops/seed"
	s3inv "github.com/keymigrate/keymigrate/internal/pipeline/inventory"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	buildOut  []byte
)

// binaries builds cmd/... once per test binary.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "keymigrate-iam-")
		if buildErr == nil {
			buildOut, buildErr = exec.Command("go", "build", "-o", binDir, "../../cmd/...").CombinedOutput()
		}
	})
	require.NoError(t, buildErr, "build binaries: %s", buildOut)
	return binDir
}

// unusedOnPurpose are grants no recorded call uses, kept on purpose; the key
// is "policy sid action resource[ condition]", the value why.
var unusedOnPurpose = map[string]string{}

// The calls every component makes, recorded while a whole migration runs
// through the built binaries (and the application's StorageService runs in
// process), each allowed by that component's policy; and no grant of those
// policies that no call uses, unless unusedOnPurpose says why.
func TestEveryRecordedCallIsAllowedAndEveryGrantUsed(t *testing.T) {
	rec, n := recording(t)
	calls := readCalls(t, rec)
	v := check(t, n, calls)
	var comps []string
	for c, k := range v.calls {
		comps = append(comps, c+"="+strconv.Itoa(k))
	}
	sort.Strings(comps)
	t.Logf("recorded %d calls: %s", len(calls), strings.Join(comps, " "))
	assert.Empty(t, v.unknown, "calls this test cannot evaluate")
	assert.Empty(t, v.denied, "calls the components make that their policies deny (fix the policy, docs/iam.md)")
	var unused []string
	for pol := range v.byPol {
		for _, g := range grants(t, pol) {
			if !v.used[g] && unusedOnPurpose[g] == "" {
				unused = append(unused, g)
			}
		}
	}
	sort.Strings(unused)
	assert.Empty(t, unused, "granted, but no recorded call uses it: remove it, or say in unusedOnPurpose why it stays")
}

// EnvReplay names a directory holding a recording (calls.jsonl, names.json)
// that the test evaluates instead of running the scenario; EnvKeep names
// one where the scenario leaves its recording. Policies can so be iterated
// on without the stack.
const (
	EnvReplay = "KEYMIGRATE_IAM_REPLAY"
	EnvKeep   = "KEYMIGRATE_IAM_KEEP"
)

func recording(t *testing.T) (string, names) {
	t.Helper()
	if dir := os.Getenv(EnvReplay); dir != "" {
		raw, err := os.ReadFile(filepath.Join(dir, "names.json"))
		require.NoError(t, err, "%s", EnvReplay)
		var n names
		require.NoError(t, json.Unmarshal(raw, &n))
		return filepath.Join(dir, "calls.jsonl"), n
	}
	env := testenv.New(t, testenv.Options{MaxReceiveCount: 2})
	dir := os.Getenv(EnvKeep)
	if dir == "" {
		dir = t.TempDir()
	}
	rec := filepath.Join(dir, "calls.jsonl")
	_ = os.Remove(rec)
	n := runScenario(t, env, rec)
	raw, err := json.Marshal(n)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "names.json"), raw, 0o644))
	return rec, n
}

// runScenario drives every component through a migration of a few photos,
// with calls recorded to rec.
func runScenario(t *testing.T, env *testenv.Env, rec string) names {
	t.Helper()
	ctx := context.Background()
	bin := binaries(t)
	// run runs a binary; verify exits 2 on the two photos whose source is
	// missing, which is what they are for.
	run := func(name string, args ...string) string {
		t.Helper()
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Env = append(env.Environ(), awsconf.EnvRecordCalls+"="+rec)
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		err := c.Run()
		if len(args) > 0 && args[0] == "verify" && c.ProcessState.ExitCode() == 2 {
			require.Contains(t, stdout.String(), "referenced_key_missing       2")
			err = nil
		}
		require.NoError(t, err, "%s %v\nstdout:\n%s\nstderr:\n%s", name, args, stdout.String(), stderr.String())
		return stdout.String()
	}
	// setup creates the queues (testenv made them: delete them first) and
	// probes the bucket.
	for _, q := range []string{env.Queue.URL(), env.DLQ.URL()} {
		_, err := env.SQS.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: &q})
		require.NoError(t, err)
	}
	run("migratectl", "setup", "--queue-name", env.Name, "--dlq-name", env.Name+"-dlq")
	// Again: setup converges existing queues on its settings.
	run("migratectl", "setup", "--queue-name", env.Name, "--dlq-name", env.Name+"-dlq")
	// A worker probes the bucket itself when no probe is recorded for it
	// (setup's failed, or the bucket changed): forget setup's.
	require.NoError(t, env.Store.S3CapabilitiesSave(ctx, ledger.S3Capabilities{Bucket: "another-bucket"}))
	opts := seed.Options{Photos: 24, Seed: 5, OwnerlessRate: 0.2, OrphanRate: 0.2, Large: 1, LargeSize: 11 << 20}
	env.Seed(t, opts)
	photos := seed.Generate(opts)
	// Two photos whose legacy object is missing: the worker dead-letters them.
	for range 2 {
		owner := uuid.NewString()
		env.InsertPhoto(t, uuid.NewString(), &owner, "uploaded/"+uuid.NewString()+".jpg", nil, nil)
	}
	// An S3 Inventory report in its own destination bucket: load it.
	invClient, invBucket := testenv.NewBucket(t)
	created := time.Now().Add(-26 * time.Hour).UTC().Truncate(time.Minute)
	invKey, _, err := invtest.WriteFromListing(ctx, env.S3, env.Objects.Bucket(), nil, s3inv.NewS3Bucket(invClient, invBucket),
		s3inv.Config{Format: s3inv.FormatCSV, DestinationBucket: invBucket, ConfigID: "daily", ObjectsPerFile: 20, CreationTime: created})
	require.NoError(t, err)
	run("migratectl", "inventory", "load", "--inventory", "s3://"+invBucket+"/"+invKey)
	run("migratectl", "plan", "--calibrate", "2", "--quiet")
	// The careful path's calibration, for a fleet run with --copy-first=false:
	// it reads each scratch copy back (the copy-first one does not).
	run("migratectl", "plan", "--calibrate", "1", "--quiet", "--copy-first=false")
	run("producer")
	worker := []string{"--drain", "--concurrency", "4", "--wait-time", "1s", "--multipart-threshold", "6MiB", "--part-size", "5MiB"}
	run("worker", worker...)
	run("migratectl", "status")
	run("migratectl", "verify", "--deep")
	run("migratectl", "dlq", "list")
	// Without a filter, redrive asks for a message move task (which the
	// local SQS server lacks: it falls back to moving batch by batch).
	// A filter that matches none: what it held is handed back.
	run("migratectl", "dlq", "redrive", "--reason", "copy_failed", "--hold", "1s")
	run("migratectl", "dlq", "redrive", "--hold", "1s")
	run("migratectl", "archived", "report")

	var archived, migrated []seed.Photo
	for _, p := range photos {
		if p.OwnerID == nil {
			archived = append(archived, p)
		} else {
			migrated = append(migrated, p)
		}
	}
	require.GreaterOrEqual(t, len(archived), 2, "the seed has ownerless photos")
	require.GreaterOrEqual(t, len(migrated), 3)
	// A bucket that keeps ACLs: the worker reads each source's ACL (a copy
	// does not carry it). The local S3 server answers GetObjectAcl with an
	// error the worker retries, so this worker runs for a few seconds only
	// (and is stopped as Kubernetes would, which releases what it holds);
	// then the ACLs are forgotten and the photos migrate.
	caps, ok, err := env.Store.S3CapabilitiesGet(ctx, env.Objects.Bucket())
	require.NoError(t, err)
	require.True(t, ok, "the worker recorded its probe")
	caps.ACLs = true
	require.NoError(t, env.Store.S3CapabilitiesSave(ctx, caps))
	run("migratectl", "archived", "assign", "--photo", archived[1].ID, "--owner", *migrated[0].OwnerID)
	c := exec.Command(filepath.Join(bin, "worker"), worker...)
	c.Env = append(env.Environ(), awsconf.EnvRecordCalls+"="+rec)
	require.NoError(t, c.Start())
	time.Sleep(5 * time.Second)
	require.NoError(t, c.Process.Signal(syscall.SIGTERM))
	_ = c.Wait()
	caps.ACLs = false
	require.NoError(t, env.Store.S3CapabilitiesSave(ctx, caps))
	run("migratectl", "archived", "assign", "--photo", archived[0].ID, "--owner", *migrated[0].OwnerID)
	run("worker", worker...)
	run("migratectl", "rollback", "--photo", migrated[0].ID, "--force", "--delete-new")
	run("migratectl", "cleanup", "--grace", "0")
	// A rollback after cleanup copies the legacy objects back first.
	run("migratectl", "rollback", "--photo", migrated[1].ID, "--force")
	run("migratectl", "archived", "purge", "--older-than", "1ns", "--yes")
	run("migratectl", "verify")

	user := *migrated[2].OwnerID
	run("migratectl", "presign", "upload", "--user", user, "--photo", migrated[2].ID)
	run("migratectl", "presign", "download", "--user", user, "--key", keylayout.OriginalKey(user, migrated[2].ID, "jpg"))
	runStorageService(t, ctx, env, rec, user)
	return names{Bucket: env.Objects.Bucket(), Queue: env.Name, DLQ: env.Name + "-dlq", Inventory: invBucket}
}

// runStorageService makes the application's calls, in process, on a client
// that records them as "app".
func runStorageService(t *testing.T, ctx context.Context, env *testenv.Env, rec, user string) {
	t.Helper()
	mw, err := awsconf.RecordCalls(rec, "app")
	require.NoError(t, err)
	client := awsconf.S3(env.AWS, awsconf.Options{PathStyle: true}, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, mw) })
	svc, err := storage.New(client, env.Objects.Bucket(), storage.Options{})
	require.NoError(t, err)
	photo := uuid.NewString()
	body := []byte("photo bytes")
	key, err := svc.Put(ctx, user, storage.Original(photo, "jpg"), bytes.NewReader(body), int64(len(body)), "image/jpeg")
	require.NoError(t, err)
	o, err := svc.Get(ctx, user, storage.Original(photo, "jpg"))
	require.NoError(t, err)
	o.Body.Close()
	_, err = svc.Head(ctx, user, key)
	require.NoError(t, err)
	_, err = svc.ListPhotos(ctx, user, "", 10)
	require.NoError(t, err)
	legacy := "uploaded/" + uuid.NewString() + ".jpg"
	require.NoError(t, env.Objects.Put(ctx, objstore.PutInput{Key: legacy, Body: body, ContentType: "image/jpeg"}))
	r, err := svc.Resolve(ctx, user, storage.PhotoRow{ID: uuid.NewString(), OwnerID: &user, OriginalKey: legacy}, keylayout.KindOriginal)
	require.NoError(t, err)
	ro, err := svc.GetResolved(ctx, user, r)
	require.NoError(t, err)
	ro.Body.Close()
	_, err = svc.PresignUpload(ctx, user, storage.UploadRequest{PhotoID: photo, ContentType: "image/jpeg"})
	require.NoError(t, err)
	_, err = svc.PresignDownload(ctx, user, key, time.Minute)
	require.NoError(t, err)
	require.NoError(t, svc.Delete(ctx, user, storage.Original(photo, "jpg")))
	_, err = svc.DeletePhoto(ctx, user, photo)
	require.NoError(t, err)
}
