package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
	"github.com/keymigrate/keymigrate/worker"
)

// Found by the 30-minute soak of 2026-12-08 (seed 798473, versitygw): a row
// pointed at a user-scoped key with no object ("referenced_key_missing").
// The application wrote its own object to the key the worker was copying
// the processed image to and pointed the column at it; on a server that
// does not enforce If-None-Match on CopyObject the worker's copy, sent right
// after its HEAD found nothing, replaced the application's bytes (the known
// window, docs/guarantees.md 2). The row had changed, so the worker
// re-planned: the column now user-scoped, its move was no longer wanted, and
// the discard of that move found keymigrate's own copy there (its recorded
// ETag) and deleted it, under the row that pointed at it. A discard must
// never delete a key the photo's row points at: the application's column
// names it, whatever its bytes; and since those bytes are keymigrate's copy,
// the application's upload was most likely replaced, which the worker
// warns of. The hook stands for the application: right after the copy
// lands it points the column at that key.
func TestADiscardNeverDeletesAKeyTheRowPointsAt(t *testing.T) {
	for _, copyFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("copy first %v", copyFirst), func(t *testing.T) {
			b := setup(t, testenv.Options{})
			ctx := context.Background()
			f := b.legacyPhotoWith(false, false)
			dst := keylayout.RestoredKey(f.Owner, f.ID, "jpg")
			var once sync.Once
			hooks := worker.Hooks{AfterCopy: func(hctx context.Context, photoID, newKey string) (err error) {
				if newKey != dst {
					return nil
				}
				once.Do(func() {
					_, err = b.env.Store.Pool().Exec(hctx, `UPDATE photos SET processed_key = $2 WHERE id = $1`, photoID, dst)
				})
				return err
			}}
			c := cfg()
			c.CopyFirst = copyFirst
			core, logs := observer.New(zapcore.WarnLevel)
			e := b.env
			w := worker.New(e.Store, e.Objects, e.Queue, e.DLQ, zap.New(zapcore.NewTee(core, b.log.Core())), c)
			b.send(f.ID, "run-1")
			b.drain(worker.SetHooks(w, hooks))

			p := b.env.Photo(t, f.ID)
			require.Equal(t, dst, *p.Processed, "the application's column")
			require.Equal(t, keylayout.OriginalKey(f.Owner, f.ID, "png"), p.Original, "the rest of the photo migrated")
			_, err := b.env.Objects.Head(ctx, dst)
			require.NoError(t, err, "the row points at %s: it must still be there", dst)
			warned := logs.FilterMessageSnippet("most likely replaced by the copy").FilterField(zap.String("key", dst)).Len()
			require.Equal(t, 1, warned, "the operator is told the application's upload was most likely replaced")
		})
	}
}
