package observe

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	t.Parallel()
	m := New()
	srv, err := Listen("127.0.0.1:0", m, map[string]Check{"db": func(context.Context) error { return nil }})
	require.NoError(t, err)
	go func() { _ = srv.Serve() }()
	defer srv.Shutdown(context.Background())
	base := "http://" + srv.Addr()

	code, _ := get(t, base+"/healthz")
	require.Equal(t, 200, code)
	code, body := get(t, base+"/readyz")
	require.Equal(t, 200, code, body)

	m.Photo("migrated", "", 0.2)
	m.Copied(3, 4096)
	code, body = get(t, base+"/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, `keymigrate_photos_processed_total{outcome="migrated",reason=""} 1`)
	require.Contains(t, body, "keymigrate_bytes_copied_total 4096")

	srv.SetDraining()
	code, body = get(t, base+"/readyz")
	require.Equal(t, 503, code)
	require.True(t, strings.Contains(body, "draining"), body)
}

func TestReadyzReportsAFailingDependency(t *testing.T) {
	t.Parallel()
	srv, err := Listen("127.0.0.1:0", nil, map[string]Check{"s3": func(context.Context) error { return errors.New("connection refused") }})
	require.NoError(t, err)
	go func() { _ = srv.Serve() }()
	defer srv.Shutdown(context.Background())
	code, body := get(t, "http://"+srv.Addr()+"/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, "connection refused")
	var m *Metrics
	m.Photo("x", "", 1) // a nil *Metrics records nothing and does not panic
}

// TestReadyzGoesByTheErrorNotItsText: a failing check is a failure whatever
// its message says (readiness used to compare the text with "ok").
func TestReadyzGoesByTheErrorNotItsText(t *testing.T) {
	t.Parallel()
	srv, err := Listen("127.0.0.1:0", nil, map[string]Check{"sqs": func(context.Context) error { return errors.New("ok") }})
	require.NoError(t, err)
	go func() { _ = srv.Serve() }()
	defer srv.Shutdown(context.Background())
	code, body := get(t, "http://"+srv.Addr()+"/readyz")
	require.Equal(t, 503, code, body)
}
