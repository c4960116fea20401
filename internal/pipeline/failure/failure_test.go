package failure

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	cases := []struct {
		err       error
		reason    Reason
		permanent bool
	}{
		{Permanent(SourceMissing, base), SourceMissing, true},
		{fmt.Errorf("photo x: %w", Permanentf(InvalidOwner, "owner %q", "../a")), InvalidOwner, true},
		{fmt.Errorf("copy: %w", context.Canceled), Shutdown, false},
		{fmt.Errorf("copy: %w", context.DeadlineExceeded), Transient, false},
		{base, Transient, false},
	}
	for _, c := range cases {
		r, p := Classify(c.err)
		require.Equal(t, c.reason, r, c.err.Error())
		require.Equal(t, c.permanent, p, c.err.Error())
	}
	require.ErrorIs(t, Permanent(SourceMissing, base), base, "the cause stays reachable")
}
