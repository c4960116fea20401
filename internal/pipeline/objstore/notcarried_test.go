package objstore

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"
)

// Case 11: what a copy cannot carry is named, never silently dropped.
func TestWhatACopyCannotCarryIsNamed(t *testing.T) {
	t.Parallel()
	owner := &types.Owner{ID: aws.String("owner")}
	full := types.Grant{Grantee: &types.Grantee{Type: types.TypeCanonicalUser, ID: aws.String("owner")}, Permission: types.PermissionFullControl}
	public := types.Grant{Grantee: &types.Grantee{Type: types.TypeGroup, URI: aws.String("http://acs.amazonaws.com/groups/global/AllUsers")}, Permission: types.PermissionRead}
	require.Empty(t, describeGrants(owner, []types.Grant{full}), "the owner's default ACL needs no report")
	require.Equal(t, "ACL grants READ to http://acs.amazonaws.com/groups/global/AllUsers", describeGrants(owner, []types.Grant{full, public}))

	until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	lock := objectLock(types.ObjectLockModeCompliance, &until, types.ObjectLockLegalHoldStatusOn)
	require.Equal(t, "retention COMPLIANCE until 2030-01-02T03:04:05Z, legal hold", lock)
	require.Empty(t, objectLock("", nil, types.ObjectLockLegalHoldStatusOff))
	i := Info{ObjectLock: lock, ACL: "ACL grants READ to x"}
	require.Equal(t, "Object Lock retention COMPLIANCE until 2030-01-02T03:04:05Z, legal hold; ACL grants READ to x", i.NotCarried())
}
