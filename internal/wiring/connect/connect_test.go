package connect_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/harness/testenv"
	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/wiring/config"
	"github.com/keymigrate/keymigrate/internal/wiring/connect"
)

// TestOpenSaysHowToCreateAMissingLedger: the ledger says its schema is
// missing; the command, at its edge, says which command creates it.
func TestOpenSaysHowToCreateAMissingLedger(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	_, err := connect.Open(context.Background(), &config.Common{DatabaseURL: db}, connect.Options{Need: config.Need{DB: true}, CheckSchema: true, MaxConns: 1})
	require.ErrorIs(t, err, ledger.ErrSchemaOutdated)
	require.EqualError(t, err, "the ledger schema is missing or outdated: run `migratectl setup` (or `migratectl setup --only ledger`) first")
}
