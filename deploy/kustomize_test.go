package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// kobj is one Kubernetes object, parsed as a generic map: the tests need no
// Kubernetes API types, only the fields they cross-check.
type kobj = map[string]any

// kustomization is the subset of kustomize the manifests use. Decoding refuses
// any other field, so that a manifest using a feature this renderer does not
// implement fails loudly instead of being checked wrongly.
type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Patches    []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// builtinKinds are merged with strategic-merge semantics (lists of named items
// merged by key); other kinds (CRDs) with JSON merge-patch semantics (lists
// replaced), as kustomize does.
var builtinKinds = map[string]bool{
	"Deployment": true, "Job": true, "Service": true, "ConfigMap": true, "Secret": true,
	"ServiceAccount": true, "Namespace": true, "PodDisruptionBudget": true,
}

// clusterScoped kinds get no namespace.
var clusterScoped = map[string]bool{"Namespace": true}

// readDocs reads every YAML document of a file.
func readDocs(file string) ([]kobj, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []kobj
	for {
		var o kobj
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if o != nil {
			out = append(out, o)
		}
	}
}

// render builds a kustomization directory the way `kustomize build` does for
// the features above.
func render(dir string) ([]kobj, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml uses something this test's renderer does not implement: %w", dir, err)
	}
	var objs []kobj
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		var more []kobj
		if st.IsDir() {
			more, err = render(p)
		} else {
			more, err = readDocs(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for _, pt := range k.Patches {
		docs, err := readDocs(filepath.Join(dir, pt.Path))
		if err != nil {
			return nil, err
		}
		if len(docs) != 1 {
			return nil, fmt.Errorf("%s: a patch file holds one object (kustomize crashes on several with $patch: delete)", pt.Path)
		}
		if objs, err = applyPatch(objs, docs[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", pt.Path, err)
		}
	}
	for _, img := range k.Images {
		for _, o := range objs {
			spec := podSpec(o)
			for _, c := range append(list(spec, "containers"), list(spec, "initContainers")...) {
				cm, _ := c.(map[string]any)
				name, tag := splitImage(str(cm, "image"))
				if name != img.Name {
					continue
				}
				if img.NewName != "" {
					name = img.NewName
				}
				if img.NewTag != "" {
					tag = img.NewTag
				}
				cm["image"] = name
				if tag != "" {
					cm["image"] = name + ":" + tag
				}
			}
		}
	}
	if k.Namespace != "" {
		for _, o := range objs {
			if !clusterScoped[str(o, "kind")] {
				mp(o, "metadata")["namespace"] = k.Namespace
			}
		}
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

func applyPatch(objs []kobj, patch kobj) ([]kobj, error) {
	kind, name := str(patch, "kind"), str(patch, "metadata", "name")
	for i, o := range objs {
		if str(o, "kind") != kind || str(o, "metadata", "name") != name {
			continue
		}
		if str(patch, "$patch") == "delete" {
			return append(objs[:i:i], objs[i+1:]...), nil
		}
		merged, err := mergeValue(o, patch, "", kind)
		if err != nil {
			return nil, err
		}
		objs[i] = merged.(kobj)
		return objs, nil
	}
	return nil, fmt.Errorf("patch targets %s %s, which no resource defines", kind, name)
}

// mergeKey is the key strategic merge matches list items by, per field.
func mergeKey(field, kind string) string {
	if !builtinKinds[kind] {
		return ""
	}
	switch field {
	case "containers", "initContainers", "env", "volumes", "volumeMounts":
		return "name"
	case "ports":
		if kind == "Service" {
			return "port"
		}
		return "containerPort"
	}
	return ""
}

func mergeValue(dst, patch any, field, kind string) (any, error) {
	switch p := patch.(type) {
	case map[string]any:
		d, ok := dst.(map[string]any)
		if !ok {
			return p, nil
		}
		for k, v := range p {
			if k == "$patch" {
				if field == "" && v == "delete" {
					continue
				}
				return nil, fmt.Errorf("$patch: %v inside %s is not implemented by this test's renderer", v, field)
			}
			if v == nil {
				delete(d, k)
				continue
			}
			merged, err := mergeValue(d[k], v, k, kind)
			if err != nil {
				return nil, err
			}
			d[k] = merged
		}
		return d, nil
	case []any:
		key := mergeKey(field, kind)
		d, ok := dst.([]any)
		if key == "" || !ok {
			return p, nil
		}
		// Like kustomize: the patch's items first, in its order (merged into
		// the item with the same key, if any), then the other items.
		var out []any
		used := make([]bool, len(d))
		for _, item := range p {
			im, _ := item.(map[string]any)
			merged := item
			for j, existing := range d {
				if em, ok := existing.(map[string]any); ok && im != nil && !used[j] && em[key] == im[key] {
					m, err := mergeValue(em, im, field, kind)
					if err != nil {
						return nil, err
					}
					merged, used[j] = m, true
					break
				}
			}
			out = append(out, merged)
		}
		for j, existing := range d {
			if !used[j] {
				out = append(out, existing)
			}
		}
		return out, nil
	}
	return patch, nil
}

// Navigation in generic maps: a missing step gives the zero value.

func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	switch s := at(v, keys...).(type) {
	case string:
		return s
	case int:
		return fmt.Sprint(s)
	}
	return ""
}

func list(v any, keys ...string) []any {
	l, _ := at(v, keys...).([]any)
	return l
}

func mp(v any, keys ...string) map[string]any {
	m, _ := at(v, keys...).(map[string]any)
	return m
}

// podSpec is the pod template's spec of a workload, nil for other kinds.
func podSpec(o kobj) map[string]any {
	switch str(o, "kind") {
	case "Deployment", "Job", "StatefulSet", "DaemonSet":
		return mp(o, "spec", "template", "spec")
	}
	return nil
}

func kustomizeDirs() []string {
	return []string{path.Join("k8s", "base"), path.Join("k8s", "overlays", "local")}
}

// TestRendererMatchesKustomize compares this file's renderer with the real
// kustomize (kubectl's) where kubectl is installed, so the manifest checks
// check what a cluster would get.
func TestRendererMatchesKustomize(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: the renderer is compared with kustomize only where it is")
	}
	for _, dir := range kustomizeDirs() {
		mine, err := render(dir)
		require.NoError(t, err)
		out, err := exec.Command(kubectl, "kustomize", dir).Output()
		require.NoError(t, err, "kubectl kustomize %s", dir)
		f := filepath.Join(t.TempDir(), "out.yaml")
		require.NoError(t, os.WriteFile(f, out, 0o600))
		theirs, err := readDocs(f)
		require.NoError(t, err)
		index := func(objs []kobj) map[string]kobj {
			m := map[string]kobj{}
			for _, o := range objs {
				m[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
			}
			return m
		}
		a, b := index(mine), index(theirs)
		require.Equal(t, len(b), len(a), dir)
		for id, o := range b {
			require.True(t, reflect.DeepEqual(o, a[id]), "%s: %s differs from kustomize's:\nmine:   %v\ntheirs: %v", dir, id, a[id], o)
		}
	}
}
