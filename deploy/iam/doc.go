// Package iam holds the IAM policies (see docs/iam.md), embedded so that
// tests can parse them. TestEveryRecordedCallIsAllowedAndEveryGrantUsed
// records every AWS call each component makes while a whole migration runs
// (awsconf.EnvRecordCalls) and checks each against that component's policy,
// and every grant against the calls:
//
//   - worker-role.json: the workers: read the legacy sources (with their tags,
//     ACL and Object Lock headers), write, verify and discard their copies
//     under users/, probe the bucket; the main queue, and send to the DLQ.
//   - producer-role.json: the producer: send to the main queue.
//   - operator-policy.json: migratectl: setup (queues, probe), plan's scratch
//     prefix, inventory reports, verify, rollback, cleanup, purge, redrive.
//   - app-role.json: the application in Phase 1: objects under users/ only,
//     legacy objects read-only (dual-write reads), legacy writes denied.
//   - user-session-policy.json: confines a per-user session to
//     users/${aws:PrincipalTag/user_id}/.
//   - user-role-trust-policy.json: lets the application mint those sessions,
//     tagged with the user's id.
//   - trust-irsa.json, trust-pod-identity.json, trust-keda.json: who may
//     assume the fleet's roles (the service account through IRSA or EKS Pod
//     Identity; KEDA's operator, which reads the queue depth as the workers).
//   - cloudwatch-exporter-role.json: the CloudWatch exporter of deploy/k8s
//     (YACE, static jobs): cloudwatch:GetMetricStatistics, and
//     iam:ListAccountAliases for its account_alias label. Neither has
//     resource-level permissions, hence Resource "*"; the exporter's config
//     names the two queues. YACE's discovery jobs would need
//     cloudwatch:GetMetricData, cloudwatch:ListMetrics and tag:GetResources,
//     and find only tagged queues (setup tags none).
//
// BUCKET, REGION, ACCOUNT_ID, APP_ROLE_NAME, INVENTORY_BUCKET, OIDC_PROVIDER,
// CLUSTER_NAME, SERVICE_ACCOUNT and KEDA_OPERATOR_ROLE_NAME are placeholders
// to substitute before applying them (they are not ${...} policy variables,
// which IAM would try to resolve).
package iam

import "embed"

// Files are the policy documents.
//
//go:embed *.json
var Files embed.FS
