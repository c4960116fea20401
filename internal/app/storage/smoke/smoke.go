// Package smoke is the Phase 1 smoke test: against a real bucket, it shows that
// the server itself enforces the presigned uploads StorageService hands out
// (the user's own key is accepted; another user's prefix, a file above the
// size limit and an expired policy are refused) and that the service refuses
// cross-user requests before they reach S3. `migratectl presign smoke` runs it
// and `make smoke` runs that against a scratch bucket on the local stack.
package smoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/keymigrate/keymigrate/internal/app/storage"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// Options tune a run.
type Options struct {
	// UserA and UserB are the two users; empty takes fresh UUIDs, so runs
	// never see each other's objects.
	UserA, UserB string
	// HTTPClient sends the uploads and downloads (default: 2 minute timeout).
	HTTPClient *http.Client
	// Out receives one line per case as it finishes (nil: nothing printed).
	Out io.Writer
}

// Result is one case: what was expected and what happened.
type Result struct {
	Case string
	Want string
	Got  string
	OK   bool
}

// Run runs every case against svc's bucket and returns the results; err is
// only for a run that could not be carried out (no bucket, no credentials),
// not for a case that behaved unexpectedly (Result.OK is false).
func Run(ctx context.Context, svc *storage.Service, o Options) ([]Result, error) {
	if o.UserA == "" {
		o.UserA = uuid.NewString()
	}
	if o.UserB == "" {
		o.UserB = uuid.NewString()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 2 * time.Minute}
	}
	r := &run{ctx: ctx, svc: svc, o: o}
	r.photo = uuid.NewString()
	r.keyA = keylayout.OriginalKey(o.UserA, r.photo, "jpg")
	r.keyB = keylayout.OriginalKey(o.UserB, r.photo, "jpg")
	up, err := svc.PresignUpload(ctx, o.UserA, storage.UploadRequest{PhotoID: r.photo, ContentType: "image/jpeg"})
	if err != nil {
		return nil, fmt.Errorf("smoke: presign upload for user A: %w", err)
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, "bucket %s, user A %s, user B %s\npolicy for A: key %s, %d..%d bytes, Content-Type image/jpeg, expires %s\n",
			svc.Bucket(), o.UserA, o.UserB, up.KeyCondition, up.MinBytes, up.MaxBytes, up.Expires.Format(time.RFC3339))
	}
	r.payload = []byte("\xff\xd8\xff\xe0 keymigrate smoke test image")

	if err := r.policyCases(up); err != nil {
		return r.results, err
	}
	if err := r.expiredPolicyCase(); err != nil {
		return r.results, err
	}
	r.downloadCase()
	r.serviceRefusalCases()
	return r.results, nil
}

// policyCases posts with A's policy: to A's key (accepted, and read back),
// then to B's key, a '..' escape and a file above the limit (all refused by
// the server). The starts-with case needs a second presign, whose failure
// ends the run (the error).
func (r *run) policyCases(up *storage.PresignedUpload) error {
	ctx, svc, payload, keyA, keyB := r.ctx, r.svc, r.payload, r.keyA, r.keyB
	r.post("upload with A's policy to A's key", "204 and A reads the same bytes", up, bytes.NewReader(payload), int64(len(payload)), nil,
		func(res storage.PostResult) (string, bool) {
			if res.Status != http.StatusNoContent {
				return res.String(), false
			}
			o, err := svc.GetKey(ctx, r.o.UserA, keyA)
			if err != nil {
				return fmt.Sprintf("%s, but read back failed: %v", res, err), false
			}
			defer o.Body.Close()
			got, err := io.ReadAll(o.Body)
			if err != nil || !bytes.Equal(got, payload) || o.ContentType != "image/jpeg" {
				return fmt.Sprintf("%s, but read back %d bytes of %s (%v)", res, len(got), o.ContentType, err), false
			}
			return fmt.Sprintf("%s, read back %d bytes of %s", res, len(got), o.ContentType), true
		})

	r.post("same policy, key under B's prefix", "403 AccessDenied, nothing under B", up, bytes.NewReader(payload), int64(len(payload)), map[string]string{"key": keyB},
		r.refused(http.StatusForbidden, "AccessDenied", keyB))

	prefixUp, err := svc.PresignUpload(ctx, r.o.UserA, storage.UploadRequest{PhotoID: r.photo, ContentType: "image/jpeg", PrefixCondition: true})
	if err != nil {
		return fmt.Errorf("smoke: presign a prefix upload for user A: %w", err)
	}
	r.post("A's starts-with policy, key under B's prefix", "403 AccessDenied, nothing under B", prefixUp,
		bytes.NewReader(payload), int64(len(payload)), map[string]string{"key": keyB}, r.refused(http.StatusForbidden, "AccessDenied", keyB))

	escape := keylayout.OriginalPrefix(r.o.UserA, r.photo) + "../../../" + r.o.UserB + "/raw/" + r.photo + "/original.jpg"
	r.post("same policy, '..' from A's prefix into B's", "403 AccessDenied, nothing under B", up, bytes.NewReader(payload), int64(len(payload)), map[string]string{"key": escape},
		r.refused(http.StatusForbidden, "AccessDenied", keyB))

	tooBig := up.MaxBytes + 1
	r.post(fmt.Sprintf("file of %d bytes, one above the limit", tooBig), "400 EntityTooLarge", up, io.LimitReader(zeros{}, tooBig), tooBig, nil,
		r.refused(http.StatusBadRequest, "EntityTooLarge", ""))
	return nil
}

// expiredPolicyCase presigns a one-second policy, waits for it to expire
// and posts with it (refused by the server). The wait makes it the slowest
// case; a cancelled ctx ends the run (the error).
func (r *run) expiredPolicyCase() error {
	short, err := r.svc.PresignUpload(r.ctx, r.o.UserA, storage.UploadRequest{PhotoID: uuid.NewString(), ContentType: "image/png", Expires: time.Second})
	if err != nil {
		return fmt.Errorf("smoke: presign a short upload: %w", err)
	}
	// The policy's expiration has a precision of one second.
	wait := time.Until(short.Expires) + 1100*time.Millisecond
	select {
	case <-time.After(wait):
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	r.post(fmt.Sprintf("policy that expired %s ago", time.Since(short.Expires).Round(100*time.Millisecond)), "403 AccessDenied, nothing written", short,
		bytes.NewReader(r.payload), int64(len(r.payload)), nil, r.refused(http.StatusForbidden, "AccessDenied", short.Key))
	return nil
}

// downloadCase reads A's key back through a presigned GET: the bytes the
// first policy case uploaded.
func (r *run) downloadCase() {
	dl, err := r.svc.PresignDownload(r.ctx, r.o.UserA, r.keyA, time.Minute)
	r.check("presigned GET of A's key", "200 and the same bytes", func() (string, bool) {
		if err != nil {
			return err.Error(), false
		}
		resp, err := r.o.HTTPClient.Get(dl.URL)
		if err != nil {
			return err.Error(), false
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d, %d bytes", resp.StatusCode, len(got)), resp.StatusCode == http.StatusOK && bytes.Equal(got, r.payload)
	})
}

// serviceRefusalCases has A ask StorageService for B's key in every way it
// offers; each must be refused before any request reaches S3.
func (r *run) serviceRefusalCases() {
	ctx, svc, userA, keyB := r.ctx, r.svc, r.o.UserA, r.keyB
	r.check("StorageService: A asks to presign B's key", "refused before S3 (storage.ErrForbidden)", func() (string, bool) {
		_, err := svc.PresignDownload(ctx, userA, keyB, time.Minute)
		return errString(err), errors.Is(err, storage.ErrForbidden)
	})
	r.check("StorageService: A reads, deletes, lists B's", "refused before S3 (storage.ErrForbidden)", func() (string, bool) {
		_, gerr := svc.GetKey(ctx, userA, keyB)
		derr := svc.DeleteKey(ctx, userA, keyB)
		_, lerr := svc.ListPhotos(ctx, userA, keyB, 1)
		ok := errors.Is(gerr, storage.ErrForbidden) && errors.Is(derr, storage.ErrForbidden) && errors.Is(lerr, storage.ErrForbidden)
		return errString(gerr), ok
	})
}

// run is one smoke run: its options (defaults filled), the photo and keys
// the cases share, and the results so far.
type run struct {
	ctx     context.Context
	svc     *storage.Service
	o       Options
	results []Result

	photo      string // the photo id of A's and B's keys
	keyA, keyB string // the same photo's original under A and under B
	payload    []byte // the bytes uploaded to keyA and expected back
}

func (r *run) record(res Result) {
	r.results = append(r.results, res)
	if r.o.Out != nil {
		mark := "PASS"
		if !res.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(r.o.Out, "%-6s %s\n       want: %s\n       got:  %s\n", mark, res.Case, res.Want, res.Got)
	}
}

func (r *run) check(name, want string, fn func() (string, bool)) {
	got, ok := fn()
	r.record(Result{Case: name, Want: want, Got: got, OK: ok})
}

func (r *run) post(name, want string, up *storage.PresignedUpload, file io.Reader, size int64, override map[string]string, judge func(storage.PostResult) (string, bool)) {
	r.check(name, want, func() (string, bool) {
		res, err := up.Post(r.ctx, r.o.HTTPClient, file, size, override)
		if err != nil {
			return err.Error(), false
		}
		return judge(res)
	})
}

// refused judges a POST that must fail with status and code and leave
// nothing at mustNotExist.
func (r *run) refused(status int, code, mustNotExist string) func(storage.PostResult) (string, bool) {
	return func(res storage.PostResult) (string, bool) {
		got := res.String()
		if res.Status != status || res.Code != code {
			return got, false
		}
		if mustNotExist != "" {
			// Read as the owner of that key, through the service.
			owner, err := keylayout.ParseUserKey(mustNotExist)
			if err != nil {
				return fmt.Sprintf("%s; cannot check %s: %v", got, mustNotExist, err), false
			}
			if _, err := r.svc.Head(r.ctx, owner.UserID, mustNotExist); !errors.Is(err, storage.ErrNotFound) {
				return fmt.Sprintf("%s, but %s exists or cannot be checked (%v)", got, mustNotExist, err), false
			}
			got += ", " + mustNotExist + " absent"
		}
		return got, true
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// zeros is an endless source of zero bytes, for the oversized upload.
type zeros struct{}

// Read fills b with zeros.
func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// Failed counts the results that did not behave as expected.
func Failed(results []Result) int {
	n := 0
	for _, r := range results {
		if !r.OK {
			n++
		}
	}
	return n
}
