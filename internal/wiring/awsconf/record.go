package awsconf

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
)

// EnvRecordCalls names a file to which every AWS API call the process makes
// is appended as one JSON line (a Call), for the test that checks each
// component's IAM policy against the calls it makes (deploy/iam, docs/iam.md).
// Unset in production: nothing is recorded.
const EnvRecordCalls = "KEYMIGRATE_AWSCALLS_FILE"

// Call is one recorded AWS API call, as IAM needs to see it: the operation
// and the resources and request parameters its authorisation depends on.
type Call struct {
	Component string `json:"component"`
	Service   string `json:"service"`
	Operation string `json:"operation"`
	Bucket    string `json:"bucket,omitempty"`
	Key       string `json:"key,omitempty"`
	// Keys are a DeleteObjects call's keys (each is authorised as DeleteObject).
	Keys []string `json:"keys,omitempty"`
	// Prefix is a ListObjectsV2's s3:prefix; HasPrefix tells "" from absent.
	Prefix    string `json:"prefix,omitempty"`
	HasPrefix bool   `json:"has_prefix,omitempty"`
	// CopySource is "bucket/key" of a CopyObject or UploadPartCopy.
	CopySource       string `json:"copy_source,omitempty"`
	TaggingDirective string `json:"tagging_directive,omitempty"`
	Tagging          bool   `json:"tagging,omitempty"`
	VersionID        bool   `json:"version_id,omitempty"`
	ACL              string `json:"acl,omitempty"`
	ObjectLock       bool   `json:"object_lock,omitempty"`
	QueueURL         string `json:"queue_url,omitempty"`
	QueueName        string `json:"queue_name,omitempty"`
	SourceArn        string `json:"source_arn,omitempty"`
	DestinationArn   string `json:"destination_arn,omitempty"`
	// Presigned: the call was only signed (a presigned URL), not sent; the
	// URL's holder sends it with the signer's permissions.
	Presigned bool `json:"presigned,omitempty"`
}

// recorder appends Calls to a file; one per process and path.
type recorder struct {
	mu sync.Mutex
	f  *os.File
}

var (
	recordersMu sync.Mutex
	recorders   = map[string]*recorder{}
)

func openRecorder(path string) (*recorder, error) {
	recordersMu.Lock()
	defer recordersMu.Unlock()
	if r, ok := recorders[path]; ok {
		return r, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s (%s): %w", path, EnvRecordCalls, err)
	}
	r := &recorder{f: f}
	recorders[path] = r
	return r, nil
}

// write appends one line with a single write: O_APPEND keeps lines from
// several processes whole.
func (r *recorder) write(c Call) {
	b, err := json.Marshal(c)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.f.Write(append(b, '\n'))
}

// RecordCalls returns a middleware that appends every call made through the
// client (one line per call, not per retry) to path, naming component. Load
// installs it when EnvRecordCalls is set; tests install it on the clients of
// in-process components (the application's StorageService).
func RecordCalls(path, component string) (func(*middleware.Stack) error, error) {
	r, err := openRecorder(path)
	if err != nil {
		return nil, err
	}
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("keymigrateRecordCalls",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				c := describe(in.Parameters)
				c.Component = component
				c.Service = middleware.GetServiceID(ctx)
				c.Operation = middleware.GetOperationName(ctx)
				_, c.Presigned = stack.Finalize.Get("presignContextPolyfill")
				if _, post := stack.Finalize.Get("PresignPostRequestMiddleware"); post {
					c.Operation = "PostObject" // a presigned POST upload
				}
				r.write(c)
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}, nil
}

// describe reads the fields IAM authorises by from any S3 or SQS input.
func describe(params any) Call {
	var c Call
	if d, ok := params.(*s3.DeleteObjectsInput); ok && d.Delete != nil {
		for _, o := range d.Delete.Objects {
			if o.Key != nil {
				c.Keys = append(c.Keys, *o.Key)
			}
		}
	}
	v := reflect.ValueOf(params)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return c
	}
	v = v.Elem()
	str := func(name string) (string, bool) {
		f := v.FieldByName(name)
		if !f.IsValid() {
			return "", false
		}
		switch f.Kind() {
		case reflect.Pointer:
			if f.IsNil() || f.Elem().Kind() != reflect.String {
				return "", false
			}
			return f.Elem().String(), true
		case reflect.String:
			return f.String(), f.String() != ""
		}
		return "", false
	}
	c.Bucket, _ = str("Bucket")
	c.Key, _ = str("Key")
	c.Prefix, c.HasPrefix = str("Prefix")
	c.CopySource, _ = str("CopySource")
	c.TaggingDirective, _ = str("TaggingDirective")
	_, c.Tagging = str("Tagging")
	_, c.VersionID = str("VersionId")
	c.ACL, _ = str("ACL")
	_, lockMode := str("ObjectLockMode")
	_, lockHold := str("ObjectLockLegalHoldStatus")
	c.ObjectLock = lockMode || lockHold
	c.QueueURL, _ = str("QueueUrl")
	c.QueueName, _ = str("QueueName")
	c.SourceArn, _ = str("SourceArn")
	c.DestinationArn, _ = str("DestinationArn")
	return c
}
