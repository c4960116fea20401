package iam

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The CloudWatch exporter's role reads metrics (and the account's alias) and
// nothing else: not the queues' messages, not the bucket, and it cannot write
// metrics. That its
// actions are exactly what the exporter's jobs call is checked in deploy
// (TestCloudWatchExporter), which reads the exporter's configuration.
func TestCloudWatchExporterRole(t *testing.T) {
	t.Parallel()
	p := load(t, "cloudwatch-exporter-role.json")
	for _, s := range p.Statement {
		require.NotEmpty(t, s.Sid)
		require.Equal(t, "Allow", s.Effect, s.Sid)
		require.Empty(t, s.Principal, "%s: an identity policy names no principal", s.Sid)
		require.Empty(t, s.Condition, s.Sid)
		for _, a := range s.Action {
			require.NotContains(t, a, "*", "%s: wildcard action %q", s.Sid, a)
			require.Regexp(t, `^(cloudwatch:(Get|List)[A-Za-z]+|iam:ListAccountAliases)$`, a, "%s: read-only CloudWatch actions, and the account's alias", s.Sid)
		}
	}
	require.True(t, p.allows(t, request{action: "cloudwatch:GetMetricStatistics", resource: "*"}))
	require.True(t, p.allows(t, request{action: "iam:ListAccountAliases", resource: "*"}))
	for _, r := range []request{
		{action: "cloudwatch:PutMetricData", resource: "*"},
		{action: "cloudwatch:DeleteAlarms", resource: "*"},
		{action: "iam:CreateAccountAlias", resource: "*"},
		{action: "sqs:ReceiveMessage", resource: mainQueue},
		{action: "sqs:GetQueueAttributes", resource: dlq},
		{action: "s3:GetObject", resource: object("uploaded/job-1.jpg")},
		{action: "s3:ListBucket", resource: bucket},
	} {
		require.False(t, p.allows(t, r), "%s on %s", r.action, r.resource)
	}
}
