package cleanup

import (
	"context"
	"fmt"
	"strings"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// MissingIndexesError is a refusal to run on a large photos table that
// lacks indexes cleanup's lookups need: every page would read the whole
// table (at 10^5 rows a page took 0.3 s; at 10^9 it is hours a page).
type MissingIndexesError struct {
	Rows    int64
	Missing []string
}

// Error says what is missing and how to build it; running without them
// (Options.AllowFullScans) is the caller's to offer, in its own terms.
func (e *MissingIndexesError) Error() string {
	return fmt.Sprintf("the photos table (about %d rows) lacks %d of the indexes cleanup finds a legacy job's rows through, so every page would read the whole table; "+
		"have the application team build them (docs/guarantees.md, \"Indexes the application team adds\"; CONCURRENTLY does not lock the table):\n  %s",
		e.Rows, len(e.Missing), strings.Join(e.Missing, ";\n  ")+";")
}

// checkIndexes refuses a large table without the application's indexes
// (unless o.AllowFullScans); a small one is read whole cheaply.
func checkIndexes(ctx context.Context, st *ledger.Store, o Options) error {
	if o.AllowFullScans {
		return nil
	}
	missing, rows, err := st.PhotoMissingIndexes(ctx)
	if err != nil {
		return err
	}
	// Only the job lookups matter to cleanup, not the owner index.
	var need []string
	for _, m := range missing {
		if m != ledger.ApplicationIndexes[0] {
			need = append(need, m)
		}
	}
	if len(need) == 0 || rows < o.FullScanRows {
		return nil
	}
	return &MissingIndexesError{Rows: rows, Missing: need}
}
