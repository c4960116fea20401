package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// object is one object of a rendered kustomization.
type object struct {
	APIVersion, Kind, Name, Namespace string
	// JSON is the object as kustomize rendered it.
	JSON []byte
	// Value is the object decoded into its API type: *appsv1.Deployment,
	// *monv1.ServiceMonitor, *scaledObject, ...
	Value any
}

func (o object) String() string { return o.Kind + " " + o.Name }

// apiTypes are the Go API types of the kinds the manifests use, by apiVersion
// and kind; together with crdTypes they are every kind the manifests may use.
// The Prometheus Operator publishes its types as a small module that builds
// against the same k8s.io/api; KEDA's types come only with its operator
// (controller-runtime, client-go and every scaler's SDK), so KEDA's kinds are
// checked against the schemas of its CRDs instead (crdTypes).
var apiTypes = map[string]func() any{
	"v1/Namespace":                  func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                  func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                     func() any { return new(corev1.Secret) },
	"v1/Service":                    func() any { return new(corev1.Service) },
	"v1/ServiceAccount":             func() any { return new(corev1.ServiceAccount) },
	"apps/v1/Deployment":            func() any { return new(appsv1.Deployment) },
	"batch/v1/Job":                  func() any { return new(batchv1.Job) },
	"batch/v1/CronJob":              func() any { return new(batchv1.CronJob) },
	"policy/v1/PodDisruptionBudget": func() any { return new(policyv1.PodDisruptionBudget) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monv1.PrometheusRule) },
}

// crdTypes are what the tests read of the kinds that have a CRD schema and no
// Go type here. The schema has refused every unknown field before an object
// is decoded into one of these, so they need hold only what the checks use.
var crdTypes = map[string]func() any{
	"keda.sh/v1alpha1/ScaledObject":          func() any { return new(scaledObject) },
	"keda.sh/v1alpha1/TriggerAuthentication": func() any { return new(triggerAuthentication) },
}

// scaledObject is the part of KEDA's ScaledObject the checks read.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion             string `json:"apiVersion"`
			Kind                   string `json:"kind"`
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type              string `json:"type"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is the part of KEDA's TriggerAuthentication the
// checks read.
type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		PodIdentity *struct {
			Provider      string `json:"provider"`
			IdentityOwner string `json:"identityOwner"`
		} `json:"podIdentity"`
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// crdDir holds the CRDs whose schemas check the kinds of crdTypes, copied
// unchanged from their projects (k8s/schemas/README.md says from where).
const crdDir = "k8s/schemas"

var (
	crdSchemasOnce sync.Once
	crdSchemas     map[string]*jsonschema.Schema // by apiVersion/kind
	crdSchemasErr  error
)

// loadCRDSchemas compiles the openAPIV3Schema of every served version of
// every CRD in crdDir.
func loadCRDSchemas() (map[string]*jsonschema.Schema, error) {
	crdSchemasOnce.Do(func() {
		crdSchemas, crdSchemasErr = compileCRDSchemas(filepath.FromSlash(crdDir))
	})
	return crdSchemas, crdSchemasErr
}

// crd is the part of a CustomResourceDefinition that names and validates its
// kind.
type crd struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema struct {
				OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

func compileCRDSchemas(dir string) (map[string]*jsonschema.Schema, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	out := map[string]*jsonschema.Schema{}
	c := jsonschema.NewCompiler()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var d crd
		if err := yaml.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, v := range d.Spec.Versions {
			if !v.Served {
				continue
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(v.Schema.OpenAPIV3Schema))
			if err != nil {
				return nil, fmt.Errorf("%s: version %s: %w", f, v.Name, err)
			}
			closeObjects(doc)
			id := d.Spec.Group + "/" + v.Name + "/" + d.Spec.Names.Kind
			url := "file:///crd/" + id + ".json" // a name; nothing is loaded from it
			if err := c.AddResource(url, doc); err != nil {
				return nil, fmt.Errorf("%s: version %s: %w", f, v.Name, err)
			}
			if out[id], err = c.Compile(url); err != nil {
				return nil, fmt.Errorf("%s: version %s: %w", f, v.Name, err)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CRD in %s", dir)
	}
	return out, nil
}

// closeObjects makes every object schema with declared properties refuse
// other properties. A CRD's structural schema leaves that to the API server,
// which prunes unknown fields, and refuses them outright under the field
// validation kubectl asks for by default (Strict): the check here does the
// same. An object that declares no properties (a map) or preserves unknown
// fields stays open.
func closeObjects(schema any) {
	s, ok := schema.(map[string]any)
	if !ok {
		return
	}
	if props, ok := s["properties"].(map[string]any); ok {
		if _, set := s["additionalProperties"]; !set && s["x-kubernetes-preserve-unknown-fields"] != true {
			s["additionalProperties"] = false
		}
		for _, p := range props {
			closeObjects(p)
		}
	}
	closeObjects(s["items"])
	closeObjects(s["additionalProperties"])
	closeObjects(s["not"])
	for _, k := range []string{"allOf", "anyOf", "oneOf"} {
		if l, ok := s[k].([]any); ok {
			for _, sub := range l {
				closeObjects(sub)
			}
		}
	}
}

// decodeStrictJSON decodes as the API server does under Strict field
// validation: field names are case-sensitive, and unknown or duplicate fields
// are errors that name the field ("unknown field \"spec.replcias\"").
func decodeStrictJSON(data []byte, v any) error {
	strict, err := kjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// crdObject is what an API server checks of a custom resource besides its
// schema: its metadata is a real ObjectMeta.
type crdObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec,omitempty"`
	Status            json.RawMessage `json:"status,omitempty"`
}

// decodeObject decodes one rendered object into its API type, refusing what
// the type (or, for a custom resource, its CRD's schema) does not define.
func decodeObject(apiVersion, kind string, data []byte) (any, error) {
	id := apiVersion + "/" + kind
	if newType, ok := apiTypes[id]; ok {
		v := newType()
		return v, decodeStrictJSON(data, v)
	}
	newType, ok := crdTypes[id]
	if !ok {
		return nil, fmt.Errorf("no API type or CRD schema for %s %s: add one to apiTypes or crdTypes", apiVersion, kind)
	}
	schemas, err := loadCRDSchemas()
	if err != nil {
		return nil, err
	}
	schema, ok := schemas[id]
	if !ok {
		return nil, fmt.Errorf("no CRD in %s serves %s %s", crdDir, apiVersion, kind)
	}
	if err := decodeStrictJSON(data, new(crdObject)); err != nil {
		return nil, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := schema.Validate(inst); err != nil {
		return nil, err
	}
	v := newType()
	return v, json.Unmarshal(data, v)
}

// kustomizeMu runs one kustomize build at a time: kyaml loads its OpenAPI
// schema into package globals on first use without a lock, and the parallel
// tests that render at once raced there (the race detector failed four of
// them in one CI run).
var kustomizeMu sync.Mutex

// kustomizeBuild renders a kustomization with kustomize's own library, as
// `kustomize build` and `kubectl apply -k` do, and decodes every object.
func kustomizeBuild(dir string) ([]object, error) {
	kustomizeMu.Lock()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	kustomizeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []object
	var errs []error
	for _, r := range rm.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s %s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		o := object{APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Name: r.GetName(), Namespace: r.GetNamespace(), JSON: data}
		if o.Value, err = decodeObject(o.APIVersion, o.Kind, data); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", o, o.APIVersion, err))
			continue
		}
		objs = append(objs, o)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, errors.Join(errs...))
	}
	return objs, nil
}

// splitImage splits "registry:5000/name:tag" into name and tag.
func splitImage(image string) (string, string) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, ""
	}
	return image[:i], image[i+1:]
}

func kustomizeDirs() []string {
	return []string{path.Join("k8s", "base"), path.Join("k8s", "overlays", "local")}
}

// ids lists objects as kind/name, sorted.
func ids(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Kind+"/"+o.Name)
	}
	sort.Strings(out)
	return out
}

// TestKustomizeRenders checks what kustomize makes of the two kustomizations
// beyond what checkManifests reads: the overlay leaves out the Prometheus
// operator's kinds (a local cluster usually has no CRDs for them) and the
// CloudWatch exporter, and replaces the base's pod identity with secrets.
func TestKustomizeRenders(t *testing.T) {
	t.Parallel()
	base, err := kustomizeBuild(filepath.FromSlash("k8s/base"))
	require.NoError(t, err)
	local, err := kustomizeBuild(filepath.FromSlash("k8s/overlays/local"))
	require.NoError(t, err)
	require.Len(t, base, 19, ids(base))
	require.Len(t, local, 20, ids(local))
	for _, o := range append(append([]object{}, base...), local...) {
		if o.Kind != "Namespace" {
			require.Equal(t, "keymigrate", o.Namespace, "%s", o)
		}
	}
	leftOut := []string{"ServiceMonitor/keymigrate", "PrometheusRule/keymigrate",
		// The CloudWatch exporter: fauxqs has no CloudWatch.
		"ConfigMap/" + exporterName, "Deployment/" + exporterName, "Service/" + exporterName,
		"ServiceAccount/" + exporterName, "ServiceMonitor/" + exporterName}
	require.Subset(t, ids(base), leftOut)
	for _, k := range ids(local) {
		require.NotContains(t, leftOut, k)
	}
	ta := newManifests(local, nil).triggerAuths["keymigrate-aws"]
	require.NotNil(t, ta)
	require.Nil(t, ta.Spec.PodIdentity, "podIdentity: null in the overlay's patch removes it")
	require.Len(t, ta.Spec.SecretTargetRef, 2)
}

// TestKubernetesStrictFields shows that a misspelt or mistyped field fails
// the render, as `kubectl apply` would refuse it: each edit is made to a
// scratch copy of deploy/k8s, and the error must name the field.
func TestKubernetesStrictFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, file, old, new, render, want string
	}{
		{"Deployment field", "base/worker.yaml", "spec:\n  revisionHistoryLimit: 5", "spec:\n  replcias: 2\n  revisionHistoryLimit: 5", "base",
			`Deployment keymigrate-worker (apps/v1): unknown field "spec.replcias"`},
		{"pod field", "base/worker.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSecond: 60", "base",
			`unknown field "spec.template.spec.terminationGracePeriodSecond"`},
		{"field names are case-sensitive", "base/worker.yaml", "containerPort: 9090", "containerport: 9090", "base",
			`unknown field "spec.template.spec.containers[0].ports[0].containerport"`},
		{"field of the wrong type", "base/worker.yaml", "terminationGracePeriodSeconds: 60", `terminationGracePeriodSeconds: "60"`, "base",
			`cannot unmarshal string into Go struct field PodSpec.spec.template.spec.terminationGracePeriodSeconds of type int64`},
		{"Job field", "base/producer.yaml", "backoffLimit: 6", "backofLimit: 6", "base",
			`Job keymigrate-producer (batch/v1): unknown field "spec.backofLimit"`},
		{"Service field", "base/metrics.yaml", "clusterIP: None", "clusterIp: None", "base",
			`Service keymigrate-metrics (v1): unknown field "spec.clusterIp"`},
		{"ConfigMap field", "base/config.yaml", "\ndata:\n", "\ndta:\n", "base",
			`ConfigMap keymigrate-config (v1): unknown field "dta"`},
		{"ServiceAccount metadata", "base/serviceaccount.yaml", "  annotations:", "  anotations:", "base",
			`ServiceAccount keymigrate (v1): unknown field "metadata.anotations"`},
		{"PodDisruptionBudget field", "base/pdb.yaml", "unhealthyPodEvictionPolicy:", "unhealthyPodEvictionPolicie:", "base",
			`unknown field "spec.unhealthyPodEvictionPolicie"`},
		{"ServiceMonitor field", "base/metrics.yaml", "interval: 15s", "intervall: 15s", "base",
			`ServiceMonitor keymigrate (monitoring.coreos.com/v1): unknown field "spec.endpoints[0].intervall"`},
		{"PrometheusRule field", "base/prometheusrule.yaml", "for: 15m", "fro: 15m", "base",
			`PrometheusRule keymigrate (monitoring.coreos.com/v1): unknown field "spec.groups[0].rules[0].fro"`},
		{"ScaledObject field", "base/scaledobject.yaml", "pollingInterval: 15", "pollingInterva: 15", "base",
			`at '/spec': additional properties 'pollingInterva' not allowed`},
		{"ScaledObject field of the wrong type", "base/scaledobject.yaml", "maxReplicaCount: 10", `maxReplicaCount: "10"`, "base",
			`at '/spec/maxReplicaCount': got string, want integer`},
		{"ScaledObject metadata", "base/scaledobject.yaml", "  annotations:", "  anotations:", "base",
			`ScaledObject keymigrate-worker (keda.sh/v1alpha1): unknown field "metadata.anotations"`},
		{"TriggerAuthentication field", "base/scaledobject.yaml", "identityOwner: workload", "identityOwnr: workload", "base",
			`at '/spec/podIdentity': additional properties 'identityOwnr' not allowed`},
		{"kind without a type", "base/pdb.yaml", "apiVersion: policy/v1", "apiVersion: policy/v1beta1", "base",
			"no API type or CRD schema for policy/v1beta1 PodDisruptionBudget"},
		{"field in an overlay's patch", "overlays/local/worker.yaml", "imagePullPolicy: IfNotPresent", "imagePulPolicy: IfNotPresent", "overlays/local",
			`unknown field "spec.template.spec.containers[0].imagePulPolicy"`},
		{"Secret field in the overlay", "overlays/local/secrets.yaml", "stringData:", "stringdata:", "overlays/local",
			`Secret keymigrate-database (v1): unknown field "stringdata"`},
		{"TriggerAuthentication field in the overlay's patch", "overlays/local/triggerauthentication.yaml", "- parameter: awsAccessKeyID", "- parametr: awsAccessKeyID", "overlays/local",
			`at '/spec/secretTargetRef/0': additional properties 'parametr' not allowed`},
		{"kustomization field", "base/kustomization.yaml", "resources:", "resource:", "base",
			`invalid Kustomization: json: unknown field "resource"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "k8s")
			require.NoError(t, os.CopyFS(dir, os.DirFS("k8s")))
			f := filepath.Join(dir, filepath.FromSlash(tc.file))
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			require.Contains(t, string(data), tc.old)
			require.NoError(t, os.WriteFile(f, []byte(strings.Replace(string(data), tc.old, tc.new, 1)), 0o600))
			_, err = kustomizeBuild(filepath.Join(dir, filepath.FromSlash(tc.render)))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
