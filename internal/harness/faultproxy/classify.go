package faultproxy

import (
	"net/http"
	"strings"
)

// Op is the S3 operation a request performs, as S3's API reference names it.
type Op string

// The operations Classify recognises. Anything else is OpOther.
const (
	OpListBuckets             Op = "ListBuckets"
	OpCreateBucket            Op = "CreateBucket"
	OpDeleteBucket            Op = "DeleteBucket"
	OpHeadBucket              Op = "HeadBucket"
	OpListObjects             Op = "ListObjects"
	OpListObjectsV2           Op = "ListObjectsV2"
	OpListMultipartUploads    Op = "ListMultipartUploads"
	OpDeleteObjects           Op = "DeleteObjects"
	OpPostObject              Op = "PostObject"
	OpGetBucketConfig         Op = "GetBucketConfig" // ?location, ?versioning, ?policy, …
	OpPutBucketConfig         Op = "PutBucketConfig"
	OpGetObject               Op = "GetObject"
	OpHeadObject              Op = "HeadObject"
	OpPutObject               Op = "PutObject"
	OpCopyObject              Op = "CopyObject"
	OpDeleteObject            Op = "DeleteObject"
	OpGetObjectAcl            Op = "GetObjectAcl"
	OpPutObjectAcl            Op = "PutObjectAcl"
	OpGetObjectTagging        Op = "GetObjectTagging"
	OpPutObjectTagging        Op = "PutObjectTagging"
	OpDeleteObjectTagging     Op = "DeleteObjectTagging"
	OpCreateMultipartUpload   Op = "CreateMultipartUpload"
	OpUploadPart              Op = "UploadPart"
	OpUploadPartCopy          Op = "UploadPartCopy"
	OpCompleteMultipartUpload Op = "CompleteMultipartUpload"
	OpAbortMultipartUpload    Op = "AbortMultipartUpload"
	OpListParts               Op = "ListParts"
	OpOther                   Op = "Other"
)

// CanFailIn200 reports whether S3 may answer op with HTTP 200 carrying an
// <Error> document: S3 documents it for CopyObject, UploadPartCopy and
// CompleteMultipartUpload, whose work happens after the status line is sent.
func (op Op) CanFailIn200() bool {
	return op == OpCopyObject || op == OpUploadPartCopy || op == OpCompleteMultipartUpload
}

// IsWrite reports whether op changes the bucket.
func (op Op) IsWrite() bool {
	switch op {
	case OpPutObject, OpCopyObject, OpDeleteObject, OpDeleteObjects, OpPostObject, OpPutObjectTagging, OpPutObjectAcl,
		OpDeleteObjectTagging, OpCreateMultipartUpload, OpUploadPart, OpUploadPartCopy,
		OpCompleteMultipartUpload, OpAbortMultipartUpload, OpCreateBucket, OpDeleteBucket, OpPutBucketConfig:
		return true
	}
	return false
}

// Classify names the S3 operation of a path-style request (http://host/bucket/key)
// from its method, path, query and the x-amz-copy-source header, the way S3's
// REST API tells them apart.
func Classify(r *http.Request) Op {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if path == "" {
		if r.Method == http.MethodGet {
			return OpListBuckets
		}
		return OpOther
	}
	_, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	has := func(name string) bool { _, ok := q[name]; return ok }
	copySource := r.Header.Get("X-Amz-Copy-Source") != ""

	if key == "" { // bucket-level
		switch r.Method {
		case http.MethodGet:
			switch {
			case q.Get("list-type") == "2":
				return OpListObjectsV2
			case has("uploads"):
				return OpListMultipartUploads
			case len(q) == 0 || has("prefix") || has("marker") || has("delimiter") || has("max-keys") || has("encoding-type"):
				return OpListObjects
			}
			return OpGetBucketConfig
		case http.MethodHead:
			return OpHeadBucket
		case http.MethodPut:
			if len(q) == 0 {
				return OpCreateBucket
			}
			return OpPutBucketConfig
		case http.MethodDelete:
			if len(q) == 0 {
				return OpDeleteBucket
			}
			return OpPutBucketConfig
		case http.MethodPost:
			if has("delete") {
				return OpDeleteObjects
			}
			return OpPostObject
		}
		return OpOther
	}

	switch r.Method {
	case http.MethodGet:
		switch {
		case has("acl"):
			return OpGetObjectAcl
		case has("tagging"):
			return OpGetObjectTagging
		case has("uploadId"):
			return OpListParts
		}
		return OpGetObject
	case http.MethodHead:
		return OpHeadObject
	case http.MethodPut:
		switch {
		case has("partNumber") && has("uploadId") && copySource:
			return OpUploadPartCopy
		case has("partNumber") && has("uploadId"):
			return OpUploadPart
		case has("acl"):
			return OpPutObjectAcl
		case has("tagging"):
			return OpPutObjectTagging
		case copySource:
			return OpCopyObject
		}
		return OpPutObject
	case http.MethodPost:
		switch {
		case has("uploads"):
			return OpCreateMultipartUpload
		case has("uploadId"):
			return OpCompleteMultipartUpload
		}
		return OpOther
	case http.MethodDelete:
		switch {
		case has("uploadId"):
			return OpAbortMultipartUpload
		case has("tagging"):
			return OpDeleteObjectTagging
		}
		return OpDeleteObject
	}
	return OpOther
}
