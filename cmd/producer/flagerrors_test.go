package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/producer"
)

// The producer library describes what is wrong with its configuration; the
// command must still tell the user which flag, what was wrong and what to do.
func TestLibraryErrorsAreToldInTheFlagsWords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	readList := func(path string) error {
		_, err := producer.ReadPhotoList(path, "uuid")
		require.Error(t, err)
		return err
	}
	badOwner := keylayout.ValidateID("../etc")
	malformed := file("ids.txt", "0b6b4a3e-3f6a-4b0e-9d1c-2f1e8a7c5d40\nnot-an-id\n")
	empty := file("empty.txt", "# nothing\n")

	for _, c := range []struct {
		err  error
		want string
	}{
		{&producer.InvalidShardError{Index: 4, Count: 4}, "--shard 4/4: give i/n with 0 <= i < n"},
		{producer.ErrShardWithListOrLimit, "--shard cannot be combined with --photos-from or --limit: shards split the photos table, not a list or a count"},
		{producer.ErrNewShardedRunWithoutID, "--new-run with --shard needs --run-id: every shard's producer must name the same run"},
		{&producer.InvalidOwnerError{Owner: "../etc", Err: badOwner}, `--owner "../etc": ` + badOwner.Error() + "; give the owner's id exactly as photos.owner_id holds it"},
		{&producer.InvalidLimitError{Limit: -3}, "--limit -3: give a positive number of photos (0: no limit)"},
		{readList(empty), "--photos-from " + empty + ": the file lists no photo id; give one id per line, or a CSV with a photo_id column"},
		{readList(malformed), "--photos-from " + malformed + `: 1 malformed lines; nothing was enqueued. Fix or remove them and run again:` + "\n" + `  line 2: "not-an-id": not a photo id (a UUID or a positive decimal integer)`},
		{readList(filepath.Join(dir, "missing.txt")), "--photos-from " + filepath.Join(dir, "missing.txt") + ": open " + filepath.Join(dir, "missing.txt") + ": no such file or directory"},
	} {
		got := inFlagTerms(c.err)
		require.EqualError(t, got, c.want)
		require.ErrorIs(t, got, c.err, "the library's error stays in the chain")
	}

	// Errors that are not about a flag pass unchanged.
	require.NoError(t, inFlagTerms(nil))
	require.Same(t, context.Canceled, inFlagTerms(context.Canceled))
	other := errors.New("connection refused")
	require.Equal(t, other, inFlagTerms(other))
}
