package objstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// TestDeleteBatchIfSaysWhyAsAValue deletes, conditionally on the ETags read
// earlier, an object someone else deleted since, one the application rewrote
// since, and one nobody touched, on the test's S3 server: once the way the
// probe says the server allows, once reading each object first (what a server
// enforcing no condition gets). The rewritten object is kept and reported as
// DeletePreconditionFailed, the untouched one deleted, and the missing one is
// either deleted as far as the server is concerned or reported as
// DeleteNotFound, never as another failure: cleanup counts it as deleted.
func TestDeleteBatchIfSaysWhyAsAValue(t *testing.T) {
	t.Parallel()
	client, bucket := testenv.NewBucket(t)
	ctx := context.Background()
	st := objstore.New(client, bucket, objstore.Options{})
	probed, err := st.Probe(ctx)
	require.NoError(t, err)
	put := func(key, body string) string {
		t.Helper()
		require.NoError(t, st.Put(ctx, objstore.PutInput{Key: key, Body: []byte(body)}))
		i, err := st.Head(ctx, key)
		require.NoError(t, err)
		return i.ETag
	}
	for _, c := range []struct {
		name string
		caps objstore.Capabilities
	}{
		{"as the server allows", probed},
		{"read before the delete", objstore.Capabilities{}},
	} {
		st.SetCapabilities(c.caps)
		gone, changed, ours := c.name+"/gone", c.name+"/changed", c.name+"/ours"
		etags := map[string]string{gone: put(gone, "legacy"), changed: put(changed, "legacy"), ours: put(ours, "legacy")}
		require.NoError(t, st.Delete(ctx, gone))
		put(changed, "the application's newer bytes")

		failed, err := st.DeleteBatchIf(ctx, etags, 4)
		require.NoError(t, err, c.name)
		require.Equal(t, objstore.DeletePreconditionFailed, failed[changed].Reason, "%s: %v", c.name, failed)
		_, err = st.Head(ctx, changed)
		require.NoError(t, err, "%s: the rewritten object is kept", c.name)
		require.NotContains(t, failed, ours, c.name)
		_, err = st.Head(ctx, ours)
		require.ErrorIs(t, err, objstore.ErrNotFound, "%s: the untouched object is deleted", c.name)
		if f, ok := failed[gone]; ok || c.caps == (objstore.Capabilities{}) {
			require.Equal(t, objstore.DeleteNotFound, f.Reason, "%s: %v", c.name, failed)
		}
	}
}

// TestDeleteObjectsErrorsAreTyped plays S3 answering a DeleteObjects whose
// per-object ETags it enforces (no local server does): each per-key error
// code becomes its DeleteReason, on the conditional and the plain batch
// delete alike.
func TestDeleteObjectsErrorsAreTyped(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !r.URL.Query().Has("delete") {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><DeleteResult>` +
			`<Error><Key>gone</Key><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>` +
			`<Error><Key>changed</Key><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>` +
			`<Error><Key>denied</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>` +
			`</DeleteResult>`))
	}))
	defer srv.Close()
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""),
	})
	st := objstore.New(client, "b", objstore.Options{})
	st.SetCapabilities(objstore.Capabilities{ConditionalBatchDelete: true})
	want := map[string]objstore.DeleteFailure{
		"gone":    {Reason: objstore.DeleteNotFound, Code: "NoSuchKey", Message: "The specified key does not exist."},
		"changed": {Reason: objstore.DeletePreconditionFailed, Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"},
		"denied":  {Reason: objstore.DeleteOther, Code: "AccessDenied", Message: "Access Denied"},
	}
	failed, err := st.DeleteBatchIf(context.Background(), map[string]string{"gone": `"e"`, "changed": `"e"`, "denied": `"e"`, "ours": `"e"`}, 1)
	require.NoError(t, err)
	require.Equal(t, want, failed)
	failed, err = st.DeleteBatch(context.Background(), []string{"gone", "changed", "denied", "ours"})
	require.NoError(t, err)
	require.Equal(t, want, failed)
	require.Equal(t, "AccessDenied: Access Denied", failed["denied"].String())
}
