package invtest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIsMultipartETag(t *testing.T) {
	t.Parallel()
	for etag, want := range map[string]bool{
		`"d41d8cd98f00b204e9800998ecf8427e"`:    false,
		`d41d8cd98f00b204e9800998ecf8427e`:      false,
		`"9b2cf535f27731c974343645a3985328-2"`:  true,
		`9b2cf535f27731c974343645a3985328-1000`: true,
		`"abc-"`:                                false,
	} {
		require.Equal(t, want, IsMultipartETag(etag), etag)
	}
}

func TestDisjointListsEachObjectOnce(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{""}, disjoint(nil))
	require.Equal(t, []string{"meta/", "uploaded/"}, disjoint([]string{"uploaded/", "meta/", "uploaded/2024/", "meta/"}))
	require.Equal(t, []string{""}, disjoint([]string{"uploaded/", ""}))
}
