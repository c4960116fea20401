package iam

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/wiring/awsconf"
)

// This file turns recorded AWS calls (awsconf.EnvRecordCalls) into the
// requests IAM authorises, and checks them against each component's policy:
// every call must be allowed, and every grant must be used by some call or
// be allowlisted with a reason (unusedOnPurpose).

// policyFor names the policy a component runs with.
func policyFor(component string) (string, error) {
	switch {
	case component == "worker":
		return "worker-role.json", nil
	case component == "producer":
		return "producer-role.json", nil
	case component == "app", strings.HasPrefix(component, "migratectl presign"):
		// presign signs with the application's credentials (its --help says so).
		return "app-role.json", nil
	case component == "migratectl seed", component == "migratectl dev-reset":
		return "", fmt.Errorf("%s is a local-stack tool: it runs with no production role", component)
	case strings.HasPrefix(component, "migratectl"):
		return "operator-policy.json", nil
	}
	return "", fmt.Errorf("component %q has no policy: name one in policyFor", component)
}

// names maps the test's bucket and queues to the policies' placeholders.
type names struct {
	Bucket, Queue, DLQ string
	Inventory          string // the S3 Inventory's destination bucket
}

func (n names) placeholder(bucket string) string {
	switch bucket {
	case n.Bucket:
		return "BUCKET"
	case n.Inventory:
		return "INVENTORY_BUCKET"
	}
	return bucket
}

func (n names) object(bucket, key string) string {
	return "arn:aws:s3:::" + n.placeholder(bucket) + "/" + key
}

func (n names) bucketARN(bucket string) string {
	return "arn:aws:s3:::" + n.placeholder(bucket)
}

// queueARN maps a queue URL, name or ARN to the policies' ARN.
func (n names) queueARN(ref string) string {
	name := ref[strings.LastIndexAny(ref, "/:")+1:]
	switch name {
	case n.Queue:
		name = "keymigrate"
	case n.DLQ:
		name = "keymigrate-dlq"
	}
	return "arn:aws:sqs:REGION:ACCOUNT_ID:" + name
}

// readsLock: objstore.Head reports Object Lock retention and legal holds
// (the worker records them per object); HEAD returns those headers only to a
// caller granted s3:GetObjectRetention and s3:GetObjectLegalHold. The
// application's StorageService ignores them.
func readsLock(component string) bool {
	return component != "app" && !strings.HasPrefix(component, "migratectl presign")
}

// requests are what IAM authorises for one call (the S3 and SQS
// authorisation tables: "Actions, resources, and condition keys").
func (n names) requests(c awsconf.Call) ([]request, error) {
	obj := func(action string) request { return request{action: action, resource: n.object(c.Bucket, c.Key)} }
	version := func(action, versioned string) string {
		if c.VersionID {
			return versioned
		}
		return action
	}
	// writeExtras: a write that sets tags, an ACL or a lock needs their actions too.
	writeExtras := func() []request {
		var out []request
		if c.Tagging {
			out = append(out, obj("s3:PutObjectTagging"))
		}
		if c.ACL != "" {
			out = append(out, obj("s3:PutObjectAcl"))
		}
		if c.ObjectLock {
			out = append(out, obj("s3:PutObjectRetention"), obj("s3:PutObjectLegalHold"))
		}
		return out
	}
	switch c.Service + " " + c.Operation {
	case "S3 HeadObject", "S3 GetObject":
		out := []request{obj(version("s3:GetObject", "s3:GetObjectVersion"))}
		if c.Operation == "HeadObject" && readsLock(c.Component) {
			out = append(out, obj("s3:GetObjectRetention"), obj("s3:GetObjectLegalHold"))
		}
		return out, nil
	case "S3 GetObjectTagging":
		return []request{obj(version("s3:GetObjectTagging", "s3:GetObjectVersionTagging"))}, nil
	case "S3 GetObjectAcl":
		return []request{obj(version("s3:GetObjectAcl", "s3:GetObjectVersionAcl"))}, nil
	case "S3 PutObject", "S3 PostObject", "S3 CreateMultipartUpload", "S3 UploadPart", "S3 CompleteMultipartUpload":
		return append([]request{obj("s3:PutObject")}, writeExtras()...), nil
	case "S3 AbortMultipartUpload":
		return []request{obj("s3:AbortMultipartUpload")}, nil
	case "S3 CopyObject", "S3 UploadPartCopy":
		src, err := n.copySource(c.CopySource)
		if err != nil {
			return nil, err
		}
		out := append([]request{obj("s3:PutObject"), src}, writeExtras()...)
		// TaggingDirective COPY (the default) reads the source's tags and
		// writes them to the copy.
		if c.Operation == "CopyObject" && c.TaggingDirective != "REPLACE" {
			tags := src
			tags.action = strings.Replace(src.action, "s3:GetObject", "s3:GetObjectTagging", 1)
			tags.action = strings.Replace(tags.action, "GetObjectTaggingVersion", "GetObjectVersionTagging", 1)
			out = append(out, tags, obj("s3:PutObjectTagging"))
		}
		return out, nil
	case "S3 DeleteObject":
		return []request{obj(version("s3:DeleteObject", "s3:DeleteObjectVersion"))}, nil
	case "S3 DeleteObjects":
		var out []request
		for _, k := range c.Keys {
			out = append(out, request{action: "s3:DeleteObject", resource: n.object(c.Bucket, k)})
		}
		return out, nil
	case "S3 ListObjectsV2", "S3 ListObjects":
		r := request{action: "s3:ListBucket", resource: n.bucketARN(c.Bucket), context: map[string]string{}}
		if c.HasPrefix {
			r.context["s3:prefix"] = c.Prefix
		}
		return []request{r}, nil
	case "S3 HeadBucket":
		return []request{{action: "s3:ListBucket", resource: n.bucketARN(c.Bucket)}}, nil
	case "S3 CreateBucket":
		return []request{{action: "s3:CreateBucket", resource: n.bucketARN(c.Bucket)}}, nil
	case "S3 GetBucketOwnershipControls":
		return []request{{action: "s3:GetBucketOwnershipControls", resource: n.bucketARN(c.Bucket)}}, nil
	}
	if c.Service == "SQS" {
		return n.sqsRequests(c)
	}
	return nil, fmt.Errorf("%s %s: unknown to this test's action table: add what IAM authorises it by", c.Service, c.Operation)
}

// copySource is the read of a copy's source ("bucket/key[?versionId=]").
func (n names) copySource(s string) (request, error) {
	path, query, _ := strings.Cut(s, "?")
	versioned := strings.Contains(query, "versionId=")
	path, err := url.PathUnescape(path)
	if err != nil {
		return request{}, fmt.Errorf("copy source %q: %w", s, err)
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok {
		return request{}, fmt.Errorf("copy source %q names no key", s)
	}
	action := "s3:GetObject"
	if versioned {
		action = "s3:GetObjectVersion"
	}
	return request{action: action, resource: n.object(bucket, key)}, nil
}

func (n names) sqsRequests(c awsconf.Call) ([]request, error) {
	q := func(action, ref string) request { return request{action: action, resource: n.queueARN(ref)} }
	switch c.Operation {
	case "SendMessage", "SendMessageBatch":
		return []request{q("sqs:SendMessage", c.QueueURL)}, nil
	case "ReceiveMessage", "GetQueueAttributes", "SetQueueAttributes", "PurgeQueue", "DeleteQueue":
		return []request{q("sqs:"+c.Operation, c.QueueURL)}, nil
	case "DeleteMessage", "DeleteMessageBatch":
		return []request{q("sqs:DeleteMessage", c.QueueURL)}, nil
	case "ChangeMessageVisibility", "ChangeMessageVisibilityBatch":
		return []request{q("sqs:ChangeMessageVisibility", c.QueueURL)}, nil
	case "GetQueueUrl", "CreateQueue":
		return []request{q("sqs:"+c.Operation, c.QueueName)}, nil
	case "StartMessageMoveTask":
		// The task reads and deletes from the source and sends to the
		// destination (by default the queues that redrive to the source)
		// with the caller's permissions.
		dst := c.DestinationArn
		if dst == "" {
			dst = n.Queue
		}
		return []request{
			q("sqs:StartMessageMoveTask", c.SourceArn), q("sqs:ReceiveMessage", c.SourceArn),
			q("sqs:DeleteMessage", c.SourceArn), q("sqs:GetQueueAttributes", c.SourceArn),
			q("sqs:SendMessage", dst),
		}, nil
	case "ListMessageMoveTasks", "CancelMessageMoveTask":
		return []request{q("sqs:"+c.Operation, c.SourceArn)}, nil
	}
	return nil, fmt.Errorf("SQS %s: unknown to this test's action table: add what IAM authorises it by", c.Operation)
}

// readCalls reads a recording.
func readCalls(t *testing.T, path string) []awsconf.Call {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []awsconf.Call
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var c awsconf.Call
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c), "%s: %s", path, sc.Text())
		out = append(out, c)
	}
	require.NoError(t, sc.Err())
	return out
}

// verdict is what checking a recording found.
type verdict struct {
	denied  []string            // one line per distinct denied request
	used    map[string]bool     // "policy sid action resource[ key=value]"
	calls   map[string]int      // component → calls
	unknown []string            // calls the action table does not know
	byPol   map[string][]string // policy → components seen
}

func check(t *testing.T, n names, calls []awsconf.Call) verdict {
	t.Helper()
	v := verdict{used: map[string]bool{}, calls: map[string]int{}, byPol: map[string][]string{}}
	policies := map[string]policy{}
	seenDenied := map[string]bool{}
	for _, c := range calls {
		v.calls[c.Component]++
		name, err := policyFor(c.Component)
		if err != nil {
			v.unknown = append(v.unknown, err.Error())
			continue
		}
		if _, ok := policies[name]; !ok {
			if _, err := fs.Stat(Files, name); err != nil {
				v.unknown = append(v.unknown, fmt.Sprintf("%s: its policy %s does not exist", c.Component, name))
				continue
			}
			policies[name] = load(t, name)
		}
		if v.calls[c.Component] == 1 {
			v.byPol[name] = append(v.byPol[name], c.Component)
		}
		reqs, err := n.requests(c)
		if err != nil {
			v.unknown = append(v.unknown, err.Error())
			continue
		}
		for _, r := range reqs {
			if !allowedUsing(t, policies[name], name, r, v.used) {
				line := fmt.Sprintf("%s (%s): %s %s on %s %v", c.Component, name, c.Operation, r.action, generalise(r.resource), r.context)
				if !seenDenied[line] {
					seenDenied[line] = true
					v.denied = append(v.denied, line)
				}
			}
		}
	}
	for _, b := range beyondTheScenario {
		name, err := policyFor(b.component)
		require.NoError(t, err)
		if !allowedUsing(t, load(t, name), name, b.request, v.used) {
			v.denied = append(v.denied, fmt.Sprintf("%s (%s): %s on %s (%s)", b.component, name, b.request.action, b.request.resource, b.reason))
		}
	}
	sort.Strings(v.denied)
	v.unknown = distinct(v.unknown)
	return v
}

// allowedUsing is policy.allows that also notes which grants allowed r.
func allowedUsing(t *testing.T, p policy, name string, r request, used map[string]bool) bool {
	t.Helper()
	var grants []string
	for _, s := range p.Statement {
		u, ok := s.match(t, r)
		if !ok {
			continue
		}
		if s.Effect == "Deny" {
			return false
		}
		for _, g := range u {
			grants = append(grants, name+" "+s.Sid+" "+g)
		}
	}
	for _, g := range grants {
		used[legacyClass(g)] = true
	}
	return len(grants) > 0
}

// legacyClass names the five legacy prefixes as one class of keys in a
// grant: which of them a run reaches depends on which photos it touches,
// and the layout treats them alike. (ListBucket's s3:prefix values stay
// apart: the worker lists animations only.)
func legacyClass(grant string) string {
	for _, p := range []string{"uploaded", "restored", "thumbnails", "animated", "meta"} {
		grant = strings.Replace(grant, "arn:aws:s3:::BUCKET/"+p+"/*", "arn:aws:s3:::BUCKET/LEGACY/*", 1)
	}
	return grant
}

const headFallback = "objstore.Head lists a key whose HEAD answered 403 to tell a missing key from a denial (docs/iam.md, Sharp edges)"

func listKey(key string) request {
	return request{action: "s3:ListBucket", resource: bucket, context: map[string]string{"s3:prefix": key}}
}

// beyondTheScenario are calls the components make on paths the scenario
// cannot provoke at will (a race with the application, a long photo, a
// failed multipart copy, an SQS server with message move tasks); each is
// checked as if recorded, and the reason names the code and its tests.
var beyondTheScenario = []struct {
	component string
	request   request
	reason    string
}{
	{"worker", request{action: "s3:DeleteObject", resource: "arn:aws:s3:::BUCKET/users/" + userA + "/raw/" + photo + "/original.jpg"},
		"worker/move.go discard: the worker deletes its own uncommitted copy (conditional on its ETag) when the application deleted or re-owned the photo, or a rollback happened, while it copied (worker/liveapp_test.go, worker/conditional_test.go)"},
	{"worker", request{action: "s3:AbortMultipartUpload", resource: "arn:aws:s3:::BUCKET/users/" + userA + "/raw/" + photo + "/original.jpg"},
		"objstore/copy.go: a multipart copy that fails is aborted, or its parts are billed until a lifecycle rule removes them"},
	{"worker", request{action: "sqs:ChangeMessageVisibility", resource: mainQueue},
		"worker/handle.go: extends a long photo's visibility, delays a retry, releases held messages on shutdown (worker/worker_test.go TestHardStopReleasesTheMessageAndSwapsNothing)"},
	// objstore.Head: S3 answers a HEAD of a missing key with 403 unless the
	// caller may list it; Head then lists exactly that key. The local
	// servers answer 404, so no run records these.
	{"worker", listKey("uploaded/job-1.jpg"), headFallback},
	{"worker", listKey("restored/job-1/r-1.png"), headFallback},
	{"worker", listKey("thumbnails/job-1.jpg"), headFallback},
	{"worker", listKey("meta/job-1.json"), headFallback},
	{"worker", listKey("users/" + userA + "/raw/" + photo + "/original.jpg"), headFallback},
	{"migratectl verify", listKey("restored/job-1/r-1.png"), headFallback},
	{"migratectl verify", listKey("thumbnails/job-1.jpg"), headFallback},
	{"migratectl verify", listKey("users/" + userA + "/thumbnails/" + photo + ".jpg"), headFallback},
	{"migratectl plan", listKey("keymigrate-plan-scratch/p1/x"), headFallback},
	{"migratectl dlq redrive", request{action: "sqs:ListMessageMoveTasks", resource: dlq},
		"queue.MoveStatus: follows the task StartMessageMoveTask started; the local SQS server has no move tasks, so the redrive falls back to batches before it asks"},
}

// generalise shortens an object's ARN to its top-level prefix for the
// report: ids vary, the prefix is what a policy names.
func generalise(resource string) string {
	parts := strings.SplitN(resource, "/", 3)
	if len(parts) == 3 {
		return parts[0] + "/" + parts[1] + "/…"
	}
	return resource
}

// grants lists every "policy sid action resource[ key=value]" an Allow grants.
func grants(t *testing.T, name string) []string {
	t.Helper()
	var out []string
	for _, s := range load(t, name).Statement {
		if s.Effect != "Allow" {
			continue
		}
		for _, a := range s.Action {
			for _, res := range s.Resource {
				base := legacyClass(name + " " + s.Sid + " " + a + " " + res)
				out = append(out, base)
				for _, keys := range s.Condition {
					for key, values := range keys {
						for _, val := range values {
							out = append(out, base+" "+key+"="+val)
						}
					}
				}
			}
		}
	}
	return distinct(out)
}

func distinct(l []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range l {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}
