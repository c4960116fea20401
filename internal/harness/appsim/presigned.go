package appsim

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/keymigrate/keymigrate/internal/app/storage"
)

// download reads key through a presigned GET URL, as a browser given one by
// the application does (storage.PresignDownload: the SDK's presigner, against
// the S3 endpoint the application uses). A 404 is storage.ErrNotFound, so
// that the read is judged as the application's own reads are; any other
// status is a failed read.
func (s *Sim) download(ctx context.Context, owner, key string) (string, error) {
	d, err := s.store(ctx).PresignDownload(ctx, owner, key, 0)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL, nil)
	if err != nil {
		return "", fmt.Errorf("presigned download of %s: %w", key, err)
	}
	res, err := s.deps.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("presigned download of %s: %w", key, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	switch {
	case res.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("presigned download of %s: %s: %w", key, res.Status, storage.ErrNotFound)
	case res.StatusCode >= 500:
		return "", fmt.Errorf("presigned download of %s: %s: %.200s: %w", key, res.Status, b, errUnavailable)
	case res.StatusCode != http.StatusOK:
		return "", fmt.Errorf("presigned download of %s: %s: %.200s", key, res.Status, b)
	case err != nil:
		return "", fmt.Errorf("presigned download of %s: %w", key, err)
	}
	return hashOf(b), nil
}
