package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// cleanupShardArg is what the cleanup Job's pods pass to --shard: their own
// index, of N.
var cleanupShardArg = regexp.MustCompile(`^\$\(JOB_COMPLETION_INDEX\)/(\d+)$`)

// checkCleanupJob checks the Indexed Job that runs `migratectl cleanup` on N
// machines: every index runs its own shard (--shard $(JOB_COMPLETION_INDEX)/N
// with N = completions, so no shard is left out and none is run twice), one
// process per shard at a time (a replacement pod only once the old one
// stopped), restarts in place (a shard resumes from its cursor), and a
// deliberate grace period.
func checkCleanupJob(j *batchv1.Job) []string {
	var problems []string
	add := func(format string, a ...any) {
		problems = append(problems, fmt.Sprintf("Job "+j.Name+": "+format, a...))
	}
	if j.Spec.CompletionMode == nil || *j.Spec.CompletionMode != batchv1.IndexedCompletion {
		add("completionMode must be Indexed: each pod runs the shard of its index")
	}
	completions := 1
	if j.Spec.Completions != nil {
		completions = int(*j.Spec.Completions)
	}
	if p := j.Spec.Parallelism; p != nil && int(*p) > completions {
		add("parallelism %d is above completions %d", *p, completions)
	}
	if p := j.Spec.PodReplacementPolicy; p == nil || *p != batchv1.Failed {
		add("podReplacementPolicy must be Failed: a replacement pod starts only once the old one stopped, so a shard never runs twice at once")
	}
	if rp := j.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		add("restartPolicy %q: a Job's pods restart OnFailure (or Never)", rp)
	}
	var shardArgs []string
	for _, c := range containersOf(&j.Spec.Template.Spec) {
		argv := argv(c)
		if !isKeymigrate(c) || len(argv) < 2 || argv[0] != "migratectl" || argv[1] != "cleanup" {
			continue
		}
		for i, a := range argv {
			switch {
			case a == "--shard" && i+1 < len(argv):
				shardArgs = append(shardArgs, argv[i+1])
			case strings.HasPrefix(a, "--shard="):
				shardArgs = append(shardArgs, strings.TrimPrefix(a, "--shard="))
			case a == "--dry-run":
				add("runs cleanup --dry-run: a Job that deletes nothing")
			}
		}
		if !slices.ContainsFunc(argv, func(a string) bool { return a == "--grace" || strings.HasPrefix(a, "--grace=") }) {
			add("container %s: cleanup needs --grace", c.Name)
		}
	}
	if len(shardArgs) != 1 {
		add("want one migratectl cleanup container with --shard, found %d", len(shardArgs))
		return problems
	}
	m := cleanupShardArg.FindStringSubmatch(shardArgs[0])
	if m == nil {
		add("--shard %q: want $(JOB_COMPLETION_INDEX)/N, each pod its own shard", shardArgs[0])
		return problems
	}
	if n, _ := strconv.Atoi(m[1]); n != completions {
		add("--shard %s runs shards of %d but completions is %d: shards %s", shardArgs[0], n, completions, missingOrExtra(n, completions))
	}
	return problems
}

func missingOrExtra(n, completions int) string {
	if n > completions {
		return fmt.Sprintf("%d to %d are never run", completions, n-1)
	}
	return fmt.Sprintf("%d to %d do not exist (the pods fail)", n, completions-1)
}

// renderCleanup renders the cleanup kustomization beside the base (whose
// ConfigMap, Secret and service account it uses) and checks both together
// with every check the other manifests get, and the Indexed Job's own.
func renderCleanup(t *testing.T, b *binaries, k8sDir string) []string {
	t.Helper()
	base, err := kustomizeBuild(filepath.Join(k8sDir, "base"))
	require.NoError(t, err)
	cl, err := kustomizeBuild(filepath.Join(k8sDir, "cleanup"))
	require.NoError(t, err)
	m := newManifests(append(base, cl...), externalSecrets)
	problems := checkManifests(m, b, readDockerfile(t).user(t))
	j := m.jobs["keymigrate-cleanup"]
	if j == nil {
		return append(problems, "no Job keymigrate-cleanup")
	}
	return append(problems, checkCleanupJob(j)...)
}

func TestKubernetesCleanupIndexedJob(t *testing.T) {
	t.Parallel()
	b := buildBinaries(t)
	requireNoProblems(t, renderCleanup(t, b, "k8s"))

	cases := []struct{ name, old, new, want string }{
		{"shard count differs from completions", `"$(JOB_COMPLETION_INDEX)/8"`, `"$(JOB_COMPLETION_INDEX)/4"`, "runs shards of 4 but completions is 8: shards 4 to 7 do not exist"},
		{"one shard for every pod", `"$(JOB_COMPLETION_INDEX)/8"`, `"0/8"`, `--shard "0/8": want $(JOB_COMPLETION_INDEX)/N`},
		{"not indexed", "\n  completionMode: Indexed", "\n  completionMode: NonIndexed", "completionMode must be Indexed"},
		{"replacement while the old pod runs", "\n  podReplacementPolicy: Failed\n", "\n  podReplacementPolicy: TerminatingOrFailed\n", "podReplacementPolicy must be Failed"},
		{"flag misspelt", `"--concurrency", "32"`, `"--concurency", "32"`, "--concurency"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "k8s")
			require.NoError(t, os.CopyFS(dir, os.DirFS("k8s")))
			f := filepath.Join(dir, "cleanup", "cleanup-job.yaml")
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			require.Contains(t, string(data), tc.old)
			require.NoError(t, os.WriteFile(f, []byte(strings.Replace(string(data), tc.old, tc.new, 1)), 0o600))
			problems := renderCleanup(t, b, dir)
			require.NotEmpty(t, problems)
			require.Contains(t, strings.Join(problems, "\n"), tc.want)
		})
	}
}
