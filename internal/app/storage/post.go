package storage

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"sort"
)

// PostResult is S3's answer to a form upload.
type PostResult struct {
	// Status is the HTTP status: 204 on success (no success_action_status).
	Status int
	// Code and Message are S3's error code and message, if it refused.
	Code    string
	Message string
	// ETag is the new object's ETag, on success.
	ETag string
}

// OK reports whether S3 stored the object.
func (r PostResult) OK() bool { return r.Status >= 200 && r.Status < 300 }

// String is the status and, on refusal, S3's code and message.
func (r PostResult) String() string {
	if r.OK() {
		return fmt.Sprintf("%d", r.Status)
	}
	return fmt.Sprintf("%d %s: %s", r.Status, r.Code, r.Message)
}

// Post does what a browser does with a presigned upload: a multipart/form-data
// POST of every field and then the file, last, as S3 requires. override
// replaces or adds fields (smoke tests use it to tamper with the key). The
// file is streamed with an exact Content-Length, which S3 needs, so size must
// be its length; no more than the form's fields are held in memory.
//
// The application itself never calls this (clients upload directly to S3);
// operators, smoke tests and Go clients do.
func (u *PresignedUpload) Post(ctx context.Context, hc *http.Client, file io.Reader, size int64, override map[string]string) (PostResult, error) {
	fields := make(map[string]string, len(u.Fields)+len(override))
	for k, v := range u.Fields {
		fields[k] = v
	}
	for k, v := range override {
		fields[k] = v
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)

	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	for _, k := range names {
		if err := mw.WriteField(k, fields[k]); err != nil {
			return PostResult{}, fmt.Errorf("post form: %w", err)
		}
	}
	if _, err := mw.CreateFormFile("file", "upload"); err != nil {
		return PostResult{}, fmt.Errorf("post form: %w", err)
	}
	prefix := bytes.Clone(head.Bytes())
	head.Reset()
	if err := mw.Close(); err != nil { // writes the closing boundary into head
		return PostResult{}, fmt.Errorf("post form: %w", err)
	}
	trailer := head.Bytes()

	body := io.MultiReader(bytes.NewReader(prefix), io.LimitReader(file, size), bytes.NewReader(trailer))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.URL, body)
	if err != nil {
		return PostResult{}, fmt.Errorf("post to %s: %w", u.URL, err)
	}
	req.ContentLength = int64(len(prefix)) + size + int64(len(trailer))
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := hc.Do(req)
	if err != nil {
		return PostResult{}, fmt.Errorf("post to %s: %w", u.URL, err)
	}
	defer resp.Body.Close()
	r := PostResult{Status: resp.StatusCode, ETag: resp.Header.Get("ETag")}
	if !r.OK() {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		}
		if xml.Unmarshal(raw, &e) == nil {
			r.Code, r.Message = e.Code, e.Message
		} else {
			r.Message = string(raw)
		}
	}
	return r, nil
}
