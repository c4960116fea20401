package iam

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// A small IAM evaluator, enough for these documents: explicit Deny wins, then
// any Allow, else the implicit deny. It knows the condition operators the
// documents use and fails the test on any other, so a new operator cannot be
// silently ignored.

type list []string

func (l *list) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*l = list{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

type statement struct {
	Sid         string
	Effect      string
	Principal   json.RawMessage
	Action      list
	NotAction   list
	Resource    list
	NotResource list
	Condition   map[string]map[string]list
}

type policy struct {
	Version   string
	Statement []statement
}

func load(t *testing.T, name string) policy {
	t.Helper()
	raw, err := fs.ReadFile(Files, name)
	require.NoError(t, err)
	var p policy
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&p), name)
	require.Equal(t, "2012-10-17", p.Version, "%s: without this version IAM does not resolve ${...} variables", name)
	return p
}

// request is one call as IAM sees it.
type request struct {
	action   string
	resource string
	context  map[string]string // condition keys: s3:prefix, aws:PrincipalTag/user_id
}

var variableRE = regexp.MustCompile(`\$\{([^}]+)\}`)

// substitute resolves policy variables; ok is false when one is missing (the
// element then matches nothing).
func substitute(s string, ctx map[string]string) (string, bool) {
	ok := true
	out := variableRE.ReplaceAllStringFunc(s, func(v string) string {
		val, found := ctx[variableRE.FindStringSubmatch(v)[1]]
		if !found {
			ok = false
		}
		return val
	})
	return out, ok
}

// glob is IAM's matching: * any run of characters (slashes included), ? one.
func glob(pattern, s string) bool {
	var re strings.Builder
	re.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	re.WriteString("$")
	return regexp.MustCompile(re.String()).MatchString(s)
}

func (s statement) matches(t *testing.T, r request) bool {
	t.Helper()
	_, ok := s.match(t, r)
	return ok
}

// match says whether s applies to r and, if so, which of its grants r uses:
// "action resource" for the action and resource patterns that matched, and
// "action resource key=value" for each condition value that matched.
func (s statement) match(t *testing.T, r request) ([]string, bool) {
	t.Helper()
	require.Empty(t, s.NotAction, "%s: NotAction is not used here (it grants everything else)", s.Sid)
	require.Empty(t, s.NotResource, "%s: NotResource is not used here", s.Sid)
	var actions, resources, used []string
	for _, a := range s.Action {
		if glob(strings.ToLower(a), strings.ToLower(r.action)) {
			actions = append(actions, a)
		}
	}
	for _, res := range s.Resource {
		if p, ok := substitute(res, r.context); ok && glob(p, r.resource) {
			resources = append(resources, res)
		}
	}
	if len(actions) == 0 || len(resources) == 0 {
		return nil, false
	}
	for _, a := range actions {
		for _, res := range resources {
			used = append(used, a+" "+res)
		}
	}
	for op, keys := range s.Condition {
		for key, values := range keys {
			got, present := r.context[key]
			switch op {
			case "StringLike", "StringEquals":
				if !present {
					return nil, false
				}
				hit := false
				for _, v := range values {
					p, ok := substitute(v, r.context)
					if ok && ((op == "StringLike" && glob(p, got)) || (op == "StringEquals" && p == got)) {
						hit = true
						for _, u := range used[:len(actions)*len(resources)] {
							used = append(used, u+" "+key+"="+v)
						}
					}
				}
				if !hit {
					return nil, false
				}
			case "Null":
				require.Len(t, values, 1)
				if (values[0] == "true") != !present {
					return nil, false
				}
			default:
				t.Fatalf("%s: condition operator %s unknown to this evaluator", s.Sid, op)
			}
		}
	}
	return used, true
}

func (p policy) allows(t *testing.T, r request) bool {
	t.Helper()
	allowed := false
	for _, s := range p.Statement {
		if !s.matches(t, r) {
			continue
		}
		if s.Effect == "Deny" {
			return false
		}
		allowed = true
	}
	return allowed
}

const (
	// planScratchPrefix is migratectl plan's --scratch-prefix default.
	planScratchPrefix = "keymigrate-plan-scratch/"
	inventoryObjects  = "arn:aws:s3:::INVENTORY_BUCKET/*"
	bucket            = "arn:aws:s3:::BUCKET"
	mainQueue         = "arn:aws:sqs:REGION:ACCOUNT_ID:keymigrate"
	dlq               = "arn:aws:sqs:REGION:ACCOUNT_ID:keymigrate-dlq"
	userA             = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	userB             = "1f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"
	photo             = "12"
)

func object(key string) string { return bucket + "/" + key }

func list_(prefix string) request {
	return request{action: "s3:ListBucket", resource: bucket, context: map[string]string{"s3:prefix": prefix}}
}

// legacyKeys are one key of each legacy kind, checked by the layout.
func legacyKeys(t *testing.T) []keylayout.Legacy {
	t.Helper()
	var out []keylayout.Legacy
	for _, k := range []string{"uploaded/job-1.jpg", "restored/job-1/r-1.png", "thumbnails/job-1.jpg", "animated/job-1/a1_loop.mp4", "meta/job-1.json"} {
		l, err := keylayout.ParseLegacy(k)
		require.NoError(t, err)
		out = append(out, l)
	}
	return out
}

// legacyPrefixes are the legacy layout's top-level prefixes, from its keys.
func legacyPrefixes(t *testing.T) []string {
	var out []string
	for _, l := range legacyKeys(t) {
		out = append(out, l.Key[:strings.Index(l.Key, "/")+1])
	}
	return out
}

func requireAllowed(t *testing.T, p policy, name string, rs ...request) {
	t.Helper()
	for _, r := range rs {
		require.True(t, p.allows(t, r), "%s must allow %s on %s %v", name, r.action, r.resource, r.context)
	}
}

func requireDenied(t *testing.T, p policy, name string, rs ...request) {
	t.Helper()
	for _, r := range rs {
		require.False(t, p.allows(t, r), "%s must not allow %s on %s %v", name, r.action, r.resource, r.context)
	}
}

// Every Allow names its actions one by one and confines its resources to the
// layout's prefixes (or the two queues); a bare bucket ARN only for
// ListBucket, and only with an s3:prefix condition under those prefixes.
// (A Deny may be broad: the user session policy denies everything without a
// user tag.)
func TestNoWildcardsBeyondThePrefixes(t *testing.T) {
	t.Parallel()
	allowedObjects := append(legacyPrefixes(t), keylayout.UserPrefixRoot, objstore.ProbePrefix, keylayout.UserPrefix("${aws:PrincipalTag/user_id}"), planScratchPrefix)
	under := func(s string) bool {
		for _, p := range allowedObjects {
			if s == p+"*" {
				return true
			}
		}
		return false
	}
	for _, name := range []string{"worker-role.json", "producer-role.json", "operator-policy.json", "app-role.json", "user-session-policy.json"} {
		p := load(t, name)
		for _, s := range p.Statement {
			require.NotEmpty(t, s.Sid, name)
			require.Contains(t, []string{"Allow", "Deny"}, s.Effect)
			require.Empty(t, s.Principal, "%s/%s: identity and session policies name no principal", name, s.Sid)
			if s.Effect != "Allow" {
				continue
			}
			for _, a := range s.Action {
				require.NotContains(t, a, "*", "%s/%s: wildcard action %q", name, s.Sid, a)
				require.Regexp(t, `^(s3|sqs):[A-Z][A-Za-z]+$`, a, "%s/%s", name, s.Sid)
			}
			for _, r := range s.Resource {
				switch {
				case r == bucket && s.Action[0] == "s3:GetBucketOwnershipControls":
					require.Equal(t, list{"s3:GetBucketOwnershipControls"}, s.Action, "%s/%s: only ListBucket and GetBucketOwnershipControls on the bucket", name, s.Sid)
				case r == inventoryObjects:
					require.Equal(t, "operator-policy.json", name, "%s/%s: only the operator reads inventory reports", name, s.Sid)
					require.Equal(t, list{"s3:GetObject"}, s.Action, "%s/%s: inventory reports are only read", name, s.Sid)
				case r == bucket:
					require.Equal(t, list{"s3:ListBucket"}, s.Action, "%s/%s: only ListBucket and GetBucketOwnershipControls on the bucket", name, s.Sid)
					prefixes := s.Condition["StringLike"]["s3:prefix"]
					require.NotEmpty(t, prefixes, "%s/%s: ListBucket without an s3:prefix condition lists everything", name, s.Sid)
					for _, pfx := range prefixes {
						require.True(t, under(pfx), "%s/%s: listing prefix %q", name, s.Sid, pfx)
					}
				case strings.HasPrefix(r, bucket+"/"):
					require.True(t, under(strings.TrimPrefix(r, bucket+"/")), "%s/%s: resource %q is not one of the layout's prefixes", name, s.Sid, r)
				case strings.HasPrefix(r, "arn:aws:sqs:"):
					require.Contains(t, []string{mainQueue, dlq}, r, "%s/%s", name, s.Sid)
					require.NotContains(t, r, "*")
				default:
					t.Fatalf("%s/%s: unexpected resource %q", name, s.Sid, r)
				}
			}
		}
	}
}

// What the worker calls, by the layout's own keys (the recorded calls of
// TestEveryRecordedCallIsAllowedAndEveryGrantUsed are the full list), and
// what it must not be able to do: touch a legacy object, list the bucket,
// manage the queues.
func TestWorkerRoleGetsWhatTheCodeCalls(t *testing.T) {
	t.Parallel()
	p := load(t, "worker-role.json")
	const name = "worker role"
	for _, l := range legacyKeys(t) {
		src := object(l.Key)
		dst, err := l.UserScoped(userA, photo)
		require.NoError(t, err)
		requireAllowed(t, p, name,
			// objstore.Head (HEAD needs GetObject; its Object Lock headers
			// need GetObjectRetention and GetObjectLegalHold), CopyObject's
			// source with TaggingDirective COPY, the ACL a copy does not carry.
			request{action: "s3:GetObject", resource: src},
			request{action: "s3:GetObjectTagging", resource: src},
			request{action: "s3:GetObjectAcl", resource: src},
			request{action: "s3:GetObjectRetention", resource: src},
			request{action: "s3:GetObjectLegalHold", resource: src},
			// The copy, its tags, its HEAD; the discard of an uncommitted copy.
			request{action: "s3:PutObject", resource: object(dst)},
			request{action: "s3:PutObjectTagging", resource: object(dst)},
			request{action: "s3:AbortMultipartUpload", resource: object(dst)},
			request{action: "s3:GetObject", resource: object(dst)},
			request{action: "s3:DeleteObject", resource: object(dst)},
		)
		requireDenied(t, p, name,
			request{action: "s3:PutObject", resource: src},
			request{action: "s3:PutObjectTagging", resource: src},
			// Only the operator's cleanup and purge delete legacy objects.
			request{action: "s3:DeleteObject", resource: src},
		)
	}
	requireAllowed(t, p, name,
		list_(objstore.ProbePrefix),
		list_(keylayout.LegacyAnimationPrefix("job-1")),
		// objstore.Head's 403 fallback lists a missing key, legacy or not.
		list_("uploaded/job-1.jpg"),
		list_(keylayout.OriginalKey(userA, photo, "jpg")),
		request{action: "s3:GetBucketOwnershipControls", resource: bucket},
	)
	requireDenied(t, p, name,
		list_(""),         // the whole bucket
		list_("private/"), // anything outside the layout
		request{action: "s3:ListBucket", resource: bucket},
		request{action: "s3:GetObject", resource: object("private/x")},
		request{action: "s3:PutObject", resource: "arn:aws:s3:::other-bucket/users/" + userA + "/x"},
		request{action: "s3:PutBucketPolicy", resource: bucket},
	)
	for _, a := range []string{"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage", "sqs:GetQueueAttributes"} {
		requireAllowed(t, p, name, request{action: a, resource: mainQueue})
	}
	requireAllowed(t, p, name, request{action: "sqs:SendMessage", resource: dlq})
	for _, q := range []string{mainQueue, dlq} {
		for _, a := range []string{"sqs:CreateQueue", "sqs:DeleteQueue", "sqs:PurgeQueue", "sqs:SetQueueAttributes", "sqs:GetQueueUrl", "sqs:StartMessageMoveTask"} {
			requireDenied(t, p, name, request{action: a, resource: q})
		}
	}
	// The DLQ is the operator's to read.
	requireDenied(t, p, name, request{action: "sqs:ReceiveMessage", resource: dlq}, request{action: "sqs:DeleteMessage", resource: dlq})
	requireDenied(t, p, name, request{action: "sqs:SendMessage", resource: "arn:aws:sqs:REGION:ACCOUNT_ID:other"})
}

// The producer only enqueues.
func TestProducerRoleOnlyEnqueues(t *testing.T) {
	t.Parallel()
	p := load(t, "producer-role.json")
	requireAllowed(t, p, "producer role", request{action: "sqs:SendMessage", resource: mainQueue})
	requireDenied(t, p, "producer role",
		request{action: "sqs:SendMessage", resource: dlq},
		request{action: "sqs:ReceiveMessage", resource: mainQueue},
		request{action: "sqs:PurgeQueue", resource: mainQueue},
		request{action: "s3:GetObject", resource: object("uploaded/job-1.jpg")},
		list_("uploaded/"),
	)
}

// The operator deletes legacy objects (cleanup, purge) and copies
// (rollback), copies back to legacy keys (rollback after cleanup), sets the
// queues up and redrives the DLQ; it writes under users/ only in the probe's
// prefix, never deletes or purges a queue, and reads no other bucket than
// the inventory's.
func TestOperatorPolicy(t *testing.T) {
	t.Parallel()
	p := load(t, "operator-policy.json")
	const name = "operator policy"
	for _, l := range legacyKeys(t) {
		dst, err := l.UserScoped(userA, photo)
		require.NoError(t, err)
		requireAllowed(t, p, name,
			request{action: "s3:DeleteObject", resource: object(l.Key)},
			request{action: "s3:PutObject", resource: object(l.Key)},
			request{action: "s3:DeleteObject", resource: object(dst)},
			request{action: "s3:GetObject", resource: object(dst)},
		)
		requireDenied(t, p, name, request{action: "s3:PutObject", resource: object(dst)})
	}
	requireAllowed(t, p, name,
		request{action: "s3:PutObject", resource: object(planScratchPrefix + "p1/x")},
		request{action: "s3:PutObject", resource: object(objstore.ProbePrefix + "x")},
		request{action: "s3:GetObject", resource: "arn:aws:s3:::INVENTORY_BUCKET/BUCKET/daily/2026-01-01T00-00Z/manifest.json"},
		request{action: "sqs:CreateQueue", resource: mainQueue},
		request{action: "sqs:StartMessageMoveTask", resource: dlq},
		request{action: "sqs:SendMessage", resource: mainQueue},
	)
	requireDenied(t, p, name,
		list_(""), list_("private/"),
		request{action: "s3:PutObject", resource: "arn:aws:s3:::INVENTORY_BUCKET/x"},
		request{action: "s3:GetObject", resource: object("private/x")},
		request{action: "sqs:DeleteQueue", resource: mainQueue},
		request{action: "sqs:PurgeQueue", resource: mainQueue},
		request{action: "sqs:PurgeQueue", resource: dlq},
		request{action: "sqs:ReceiveMessage", resource: mainQueue},
		request{action: "sqs:SendMessage", resource: dlq},
	)
}

// What StorageService calls, for every kind, and that the application can no
// longer write a legacy key (explicitly denied, so a leftover broader policy
// cannot re-allow it).
func TestAppRoleGetsWhatStorageServiceCalls(t *testing.T) {
	t.Parallel()
	p := load(t, "app-role.json")
	const name = "app role"
	svc, err := storage.New(s3.New(s3.Options{Region: "us-east-1"}), "BUCKET", storage.Options{})
	require.NoError(t, err)
	for _, r := range []storage.Ref{
		storage.Original(photo, "jpg"), storage.Restored(photo, "png"), storage.Thumbnail(photo),
		storage.Animation(photo, "a1", "loop"), storage.Metadata(photo),
	} {
		k, err := svc.Key(userA, r)
		require.NoError(t, err)
		requireAllowed(t, p, name,
			request{action: "s3:PutObject", resource: object(k)},    // Put, PutKey, presigned POST
			request{action: "s3:GetObject", resource: object(k)},    // Get, GetKey, Head, presigned GET
			request{action: "s3:DeleteObject", resource: object(k)}, // Delete, DeleteKey, DeletePhoto
		)
	}
	requireAllowed(t, p, name,
		list_(keylayout.OriginalsPrefix(userA)),                              // ListPhotos
		list_(keylayout.AnimationPrefix(userA, photo)),                       // DeletePhoto
		list_(keylayout.MetadataKey(userA, photo)),                           // Resolve's existence check
		request{action: "s3:GetObject", resource: object("meta/job-1.json")}, // GetResolved of a legacy key
	)
	for _, l := range legacyKeys(t) {
		requireAllowed(t, p, name, request{action: "s3:GetObject", resource: object(l.Key)})
		requireDenied(t, p, name,
			request{action: "s3:PutObject", resource: object(l.Key)},
			request{action: "s3:DeleteObject", resource: object(l.Key)},
			request{action: "s3:PutObjectTagging", resource: object(l.Key)},
		)
	}
	requireDenied(t, p, name,
		list_(""), list_("uploaded/"),
		request{action: "s3:GetObject", resource: object("private/x")},
		request{action: "sqs:SendMessage", resource: mainQueue},
		request{action: "sqs:ReceiveMessage", resource: dlq},
	)
}

// A session tagged user_id=A reaches A's objects and nothing else; without
// the tag it reaches nothing.
func TestUserSessionIsConfinedToItsPrefix(t *testing.T) {
	t.Parallel()
	p := load(t, "user-session-policy.json")
	const name = "user session"
	as := func(user string, r request) request {
		ctx := map[string]string{}
		for k, v := range r.context {
			ctx[k] = v
		}
		if user != "" {
			ctx["aws:PrincipalTag/user_id"] = user
		}
		r.context = ctx
		return r
	}
	for _, kind := range keylayout.Kinds {
		u := keylayout.UserKey{Kind: kind, UserID: userA, PhotoID: photo}
		switch kind {
		case keylayout.KindOriginal, keylayout.KindRestored:
			u.Ext = "jpg"
		case keylayout.KindAnimation:
			u.AnimationID, u.Suffix = "a1", "loop"
		}
		own, err := u.Build()
		require.NoError(t, err)
		u.UserID = userB
		theirs, err := u.Build()
		require.NoError(t, err)
		for _, a := range []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} {
			requireAllowed(t, p, name, as(userA, request{action: a, resource: object(own)}))
			requireDenied(t, p, name,
				as(userA, request{action: a, resource: object(theirs)}),
				as("", request{action: a, resource: object(own)}),
			)
		}
	}
	requireAllowed(t, p, name, as(userA, list_(keylayout.UserPrefix(userA))), as(userA, list_(keylayout.OriginalsPrefix(userA))))
	requireDenied(t, p, name,
		as(userA, list_(keylayout.UserPrefix(userB))),
		as(userA, list_("users/")),
		as(userA, list_("")),
		as("", list_(keylayout.UserPrefix(userA))),
		// "1" must not reach "12": the prefix ends with a slash.
		as("1", request{action: "s3:GetObject", resource: object(keylayout.ThumbnailKey("12", photo))}),
		as(userA, request{action: "s3:GetObject", resource: object("uploaded/job-1.jpg")}),
		as(userA, request{action: "s3:PutBucketPolicy", resource: bucket}),
	)
}

// The trust policy lets only the application role assume the user role, and
// only with a non-empty user_id tag and no other tag.
func TestUserRoleTrustPolicy(t *testing.T) {
	t.Parallel()
	p := load(t, "user-role-trust-policy.json")
	require.Len(t, p.Statement, 1)
	s := p.Statement[0]
	require.Equal(t, "Allow", s.Effect)
	require.JSONEq(t, `{"AWS": "arn:aws:iam::ACCOUNT_ID:role/APP_ROLE_NAME"}`, string(s.Principal))
	require.ElementsMatch(t, list{"sts:AssumeRole", "sts:TagSession"}, s.Action)
	require.Equal(t, list{"?*"}, s.Condition["StringLike"]["aws:RequestTag/user_id"])
	require.Equal(t, list{"user_id"}, s.Condition["ForAllValues:StringEquals"]["aws:TagKeys"])
}

// Every file in the directory is parsed by one of the tests above.
func TestEveryPolicyIsTested(t *testing.T) {
	t.Parallel()
	names, err := fs.Glob(Files, "*.json")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"app-role.json", "cloudwatch-exporter-role.json", "operator-policy.json", "producer-role.json", "trust-irsa.json", "trust-keda.json", "trust-pod-identity.json", "user-role-trust-policy.json", "user-session-policy.json", "worker-role.json"}, names,
		fmt.Sprintf("a new policy needs a test: %v", names))
}
