package iam

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fleet's roles are assumed only by their own service account (IRSA's
// sub and aud, or EKS Pod Identity's session tags, in this account and
// cluster), and by KEDA's operator, which reads the queue depth with the
// workers' role (TriggerAuthentication identityOwner: workload). No trust
// policy lets a wildcard principal in.
func TestTrustPolicies(t *testing.T) {
	t.Parallel()
	accounts := serviceAccounts(t)
	for _, sa := range []string{"keymigrate", "keymigrate-producer"} {
		require.Contains(t, accounts, sa, "deploy/k8s/base/serviceaccount.yaml names the service account the trust policies are for")
	}

	irsa := load(t, "trust-irsa.json")
	require.Len(t, irsa.Statement, 1)
	s := irsa.Statement[0]
	require.JSONEq(t, `{"Federated": "arn:aws:iam::ACCOUNT_ID:oidc-provider/OIDC_PROVIDER"}`, string(s.Principal))
	require.Equal(t, list{"sts:AssumeRoleWithWebIdentity"}, s.Action)
	require.Equal(t, list{"system:serviceaccount:keymigrate:SERVICE_ACCOUNT"}, s.Condition["StringEquals"]["OIDC_PROVIDER:sub"], "one service account, exactly (StringEquals, no wildcard)")
	require.Equal(t, list{"sts.amazonaws.com"}, s.Condition["StringEquals"]["OIDC_PROVIDER:aud"])

	pi := load(t, "trust-pod-identity.json")
	require.Len(t, pi.Statement, 1)
	s = pi.Statement[0]
	require.JSONEq(t, `{"Service": "pods.eks.amazonaws.com"}`, string(s.Principal))
	require.ElementsMatch(t, list{"sts:AssumeRole", "sts:TagSession"}, s.Action, "the Pod Identity agent tags its sessions")
	require.Equal(t, list{"ACCOUNT_ID"}, s.Condition["StringEquals"]["aws:SourceAccount"])
	require.Equal(t, list{"keymigrate"}, s.Condition["StringEquals"]["aws:RequestTag/kubernetes-namespace"])
	require.Equal(t, list{"SERVICE_ACCOUNT"}, s.Condition["StringEquals"]["aws:RequestTag/kubernetes-service-account"])
	require.Equal(t, list{"arn:aws:eks:REGION:ACCOUNT_ID:cluster/CLUSTER_NAME"}, s.Condition["ArnEquals"]["aws:SourceArn"])

	keda := load(t, "trust-keda.json")
	require.Len(t, keda.Statement, 1)
	s = keda.Statement[0]
	require.JSONEq(t, `{"AWS": "arn:aws:iam::ACCOUNT_ID:role/KEDA_OPERATOR_ROLE_NAME"}`, string(s.Principal))
	require.Equal(t, list{"sts:AssumeRole"}, s.Action)
	// What KEDA's aws-sqs-queue scaler calls with the role it assumed.
	require.True(t, load(t, "worker-role.json").allows(t, request{action: "sqs:GetQueueAttributes", resource: mainQueue}))

	for _, name := range []string{"trust-irsa.json", "trust-pod-identity.json", "trust-keda.json", "user-role-trust-policy.json"} {
		for _, s := range load(t, name).Statement {
			require.Equal(t, "Allow", s.Effect)
			require.NotContains(t, string(s.Principal), `"*"`, "%s/%s: a wildcard principal", name, s.Sid)
			require.Empty(t, s.Resource, "%s/%s: a trust policy names no resource", name, s.Sid)
		}
	}
}

// serviceAccounts are the names deploy/k8s/base/serviceaccount.yaml defines.
func serviceAccounts(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../k8s/base/serviceaccount.yaml")
	require.NoError(t, err)
	var out []string
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		if !strings.Contains(doc, "kind: ServiceAccount") {
			continue
		}
		for _, line := range strings.Split(doc, "\n") {
			if name, ok := strings.CutPrefix(line, "  name: "); ok {
				out = append(out, strings.TrimSpace(name))
			}
		}
	}
	return out
}
