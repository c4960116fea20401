// Package iam holds the IAM policies of Phase 1 (see docs/iam.md), embedded so
// that tests can parse them and check each role gets what the code calls and
// nothing beyond its prefixes:
//
//   - worker-role.json: the migration's worker (and producer, status, verify,
//     cleanup): read the legacy prefixes and, for cleanup, delete them; write
//     under users/; its two queues.
//   - app-role.json: the application in Phase 1: objects under users/ only,
//     legacy objects read-only (dual-write reads), legacy writes denied.
//   - user-session-policy.json: confines a per-user session to
//     users/${aws:PrincipalTag/user_id}/.
//   - user-role-trust-policy.json: lets the application mint those sessions,
//     tagged with the user's id.
//   - cloudwatch-exporter-role.json: the CloudWatch exporter of deploy/k8s
//     (YACE, static jobs): cloudwatch:GetMetricStatistics, and
//     iam:ListAccountAliases for its account_alias label. Neither has
//     resource-level permissions, hence Resource "*"; the exporter's config
//     names the two queues. YACE's discovery jobs would need
//     cloudwatch:GetMetricData, cloudwatch:ListMetrics and tag:GetResources,
//     and find only tagged queues (setup tags none).
//
// BUCKET, REGION, ACCOUNT_ID and APP_ROLE_NAME are placeholders to substitute
// before applying them (they are not ${...} policy variables, which IAM would
// try to resolve).
package iam

import "embed"

// Files are the policy documents.
//
//go:embed *.json
var Files embed.FS
