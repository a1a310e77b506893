package addons

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"distro/manifests"
	"distro/pkg/config"
	"distro/pkg/node/containerd"
)

var testValues = Values{ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local", StorageDir: "/var/lib/distro/storage"}

func TestDecode(t *testing.T) {
	objs, err := Decode([]byte(`
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
# only a comment
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Secret, metadata: {name: b}}
  - {apiVersion: v1, kind: Namespace, metadata: {name: c}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	if strings.Join(got, " ") != "ConfigMap/a Secret/b Namespace/c" {
		t.Errorf("decoded %v", got)
	}
	for _, bad := range []string{"kind: ConfigMap\nmetadata: {name: a}\n", "apiVersion: v1\nkind: [\n", "apiVersion: v1\nkind: ConfigMap\n"} {
		if _, err := Decode([]byte(bad)); err == nil || !strings.Contains(err.Error(), "document 1") {
			t.Errorf("Decode(%q) = %v, want an error naming document 1", bad, err)
		}
	}
}

func TestInventoryName(t *testing.T) {
	a, b := InventoryName("My App.yaml"), InventoryName("my_app.yaml")
	if a == b {
		t.Errorf("distinct files share the inventory %s", a)
	}
	for _, n := range []string{a, b, InventoryName(strings.Repeat("x", 300) + ".yaml")} {
		if len(n) > 253 || strings.ToLower(n) != n || strings.ContainsAny(n, " _") {
			t.Errorf("not a valid ConfigMap name: %q", n)
		}
	}
}

// Every packaged add-on renders to objects with the cluster's values and
// the images distro carries, never asks for a pull, and runs its pods in
// the add-ons' shared shim.
func TestRenderPackaged(t *testing.T) {
	images := manifests.Images()
	for _, k := range []string{"COREDNS_IMAGE", "METRICS_SERVER_IMAGE", "LOCAL_PATH_PROVISIONER_IMAGE", "BUSYBOX_IMAGE"} {
		if images[k] == "" || strings.HasSuffix(images[k], ":latest") {
			t.Errorf("images.env: %s = %q", k, images[k])
		}
	}
	for _, name := range config.PackagedAddons {
		data, err := Render(name, testValues)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		objs, err := Decode(data)
		if err != nil || len(objs) == 0 {
			t.Fatalf("%s: %d objects, %v", name, len(objs), err)
		}
		for _, o := range objs {
			if o.GetKind() != "Deployment" {
				continue
			}
			group, _, _ := unstructured.NestedString(o.Object, "spec", "template", "metadata", "annotations", containerd.ShimGroupAnnotation)
			if group != containerd.AddonShimGroup {
				t.Errorf("%s: Deployment %s's pods are in shim group %q, not the add-ons' %q", name, o.GetName(), group, containerd.AddonShimGroup)
			}
		}
		text := string(data)
		if strings.Contains(text, "imagePullPolicy: IfNotPresent") || strings.Contains(text, "imagePullPolicy: Always") {
			t.Errorf("%s may pull an image", name)
		}
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "image:") && !strings.Contains(line, "distro.local/") {
				t.Errorf("%s: image not carried by distro: %s", name, strings.TrimSpace(line))
			}
		}
	}
	dns, _ := Render("coredns", Values{ClusterDNS: "10.96.0.53", ClusterDomain: "corp.example"})
	if !strings.Contains(string(dns), "clusterIP: 10.96.0.53") || !strings.Contains(string(dns), "kubernetes corp.example in-addr.arpa") {
		t.Errorf("coredns does not use the cluster's DNS IP and domain:\n%s", dns)
	}
	storage, _ := Render("local-storage", testValues)
	if !strings.Contains(string(storage), `"paths": ["/var/lib/distro/storage"]`) {
		t.Errorf("local-storage does not store under the data dir")
	}
}

func TestStage(t *testing.T) {
	dir := t.TempDir()
	if err := Stage(dir, testValues, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range config.PackagedAddons {
		if _, err := os.Stat(filepath.Join(dir, name+".yaml")); err != nil {
			t.Errorf("%s not staged: %v", name, err)
		}
	}
	// A .skip file keeps local edits; --disable removes the file.
	edited := filepath.Join(dir, "coredns.yaml")
	os.WriteFile(edited, []byte("# mine\n"), 0o644)
	os.WriteFile(edited+".skip", nil, 0o644)
	if err := Stage(dir, testValues, []string{"metrics-server"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(edited); string(data) != "# mine\n" {
		t.Errorf("coredns.yaml.skip did not keep the edited file: %q", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "metrics-server.yaml")); !os.IsNotExist(err) {
		t.Errorf("disabled metrics-server.yaml still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "local-storage.yaml")); err != nil {
		t.Errorf("local-storage.yaml removed: %v", err)
	}
}

func TestHostsFile(t *testing.T) {
	node := func(name string, addrs ...corev1.NodeAddress) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
	}
	got := HostsFile([]*corev1.Node{
		node("b", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "b"}, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}),
		node("a", corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.1"}),
		node("c"), // not yet reporting addresses
	})
	if want := "203.0.113.1 a\n10.0.0.2 b\n"; got != want {
		t.Errorf("HostsFile = %q, want %q", got, want)
	}
}

func TestManifestFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.yaml", "b.json", "notes.txt", ".hidden.yaml", "sub/c.yml", ".git/d.yaml", "sub/deeper/e.yaml"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	got, err := manifestFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "a.yaml b.json sub/c.yml sub/deeper/e.yaml" {
		t.Errorf("manifestFiles = %v", got)
	}
}
