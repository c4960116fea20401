package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/ops/plan"
)

// The libraries describe a condition; migratectl says it in its flags. Each
// case gives the error a library returns and checks what the operator reads:
// the flag, what was wrong and what to do, with the library's error still in
// the chain for the code that tells errors apart.

func TestPlanErrorNamesCalibrateRun(t *testing.T) {
	t.Parallel()
	lib := fmt.Errorf("calibrate from run %s: %w", "run-nope", plan.ErrRunMigratedNothing)
	err := planError(lib, plan.Options{CalibrateRun: "run-nope"})
	require.EqualError(t, err, "--calibrate-run run-nope: the ledger has no photo this run migrated; give another run (migratectl runs) or --calibrate N")
	require.ErrorIs(t, err, plan.ErrRunMigratedNothing)

	other := errors.New("list the bucket: timeout")
	require.Equal(t, other, planError(other, plan.Options{CalibrateRun: "run-nope"}), "other errors pass as they are")
}
