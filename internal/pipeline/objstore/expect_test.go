package objstore_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// The ETag CopyExpecting announces before the write that creates the copy
// is the ETag that write returns, on the test's S3 server, for a single-part
// copy and for a multipart copy of two parts: the worker records it so that
// a copy whose response is lost is still known as keymigrate's own (F12 in
// docs/soak-findings.md). Announced before the write: expect's error stops
// the copy, and nothing is written.
func TestCopyExpectingAnnouncesTheCopysETag(t *testing.T) {
	t.Parallel()
	client, bucket := testenv.NewBucket(t)
	ctx := context.Background()
	// A 5 MiB part size (S3's minimum) and a 6 MiB source: two parts.
	st := objstore.New(client, bucket, objstore.Options{MultipartThreshold: 1 << 20, PartSize: 5 << 20})
	for _, c := range []struct {
		name string
		size int
	}{{"single part", 1 << 10}, {"multipart", 6 << 20}} {
		src := c.name + "/src"
		require.NoError(t, st.Put(ctx, objstore.PutInput{Key: src, Body: bytes.Repeat([]byte("k"), c.size)}))
		info, err := st.Head(ctx, src)
		require.NoError(t, err)
		var announced []string
		res, err := st.CopyExpecting(ctx, info, c.name+"/dst", "", func(etag string) error {
			announced = append(announced, etag)
			return nil
		})
		require.NoError(t, err, c.name)
		require.Equal(t, []string{res.ETag}, announced, "%s: the announced ETag is the copy's", c.name)
		require.Equal(t, c.size > 1<<20, res.Multipart, c.name)

		refused := c.name + "/refused"
		_, err = st.CopyExpecting(ctx, info, refused, "", func(string) error { return context.Canceled })
		require.ErrorIs(t, err, context.Canceled, c.name)
		_, err = st.Head(ctx, refused)
		require.ErrorIs(t, err, objstore.ErrNotFound, "%s: nothing written when expect refuses", c.name)
	}
}
