// Package addons keeps the cluster in step with the manifests folder
// (<data-dir>/server/manifests): every YAML or JSON file there, subfolders
// included, is applied with server-side apply, re-applied when it changes,
// and what a file made is pruned when it leaves the file or the file is
// deleted. It also writes
// the packaged add-ons (CoreDNS, local-path storage, metrics-server) into
// that folder from the templates carried in the binary.
//
// Each file's objects are recorded in an inventory ConfigMap in kube-system
// (distro-addon.<file>), so pruning works across restarts: a file deleted
// while the server was down has its objects removed at the next start.
package addons

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/klog/v2"
)

const (
	// FieldManager owns, for server-side apply, every field distro sets
	// from a manifest file.
	FieldManager = "distro-addons"
	// FileAnnotation names the manifest file an object came from.
	FileAnnotation = "addons.distro.io/file"
	// InventoryLabel marks the inventory ConfigMaps.
	InventoryLabel = "addons.distro.io/inventory"
	inventoryNS    = metav1.NamespaceSystem
	inventoryKey   = "objects"
)

// Deployer is the manifests component.
type Deployer struct {
	Dir    string
	Config *rest.Config
	// Interval between scans of Dir (default 2 s).
	Interval time.Duration

	client  kubernetes.Interface
	dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	// applied is the checksum of each file's last complete apply; lastErr
	// its last error (logged once, not on every retry).
	applied, lastErr map[string]string
	// known are the files that have an inventory (nil until listed).
	known map[string]bool
}

func (d *Deployer) Name() string { return "add-on manifests" }

// Run reports ready at once (the node need not wait for the add-ons),
// applies the folder, and keeps scanning it until ctx ends. Apply errors
// are logged and retried; they never stop the server.
func (d *Deployer) Run(ctx context.Context, ready func()) error {
	if d.Interval == 0 {
		d.Interval = 2 * time.Second
	}
	var err error
	if d.client, err = kubernetes.NewForConfig(d.Config); err != nil {
		return err
	}
	if d.dynamic, err = dynamic.NewForConfig(d.Config); err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(d.Config)
	if err != nil {
		return err
	}
	d.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	d.applied, d.lastErr = map[string]string{}, map[string]string{}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return err
	}
	ready()
	klog.Infof("applying the manifests in %s (and watching it for changes)", d.Dir)
	d.Sync(ctx)
	t := time.NewTicker(d.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.Sync(ctx)
		}
	}
}

// manifestFile reports whether name is applied: YAML or JSON, not hidden.
func manifestFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch filepath.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// manifestFiles lists the manifests under dir, subfolders included (hidden
// ones are not), as slash-separated paths relative to dir.
func manifestFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if path != dir && strings.HasPrefix(e.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if manifestFile(e.Name()) {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out, err
}

// Sync applies every changed file and prunes what deleted files made.
func (d *Deployer) Sync(ctx context.Context) {
	names, err := manifestFiles(d.Dir)
	if err != nil {
		d.report("", fmt.Errorf("read %s: %w", d.Dir, err))
		return
	}
	present := map[string]bool{}
	for _, name := range names {
		present[name] = true
		if _, err := os.Stat(filepath.Join(d.Dir, name+".skip")); err == nil {
			continue // left alone: neither applied nor pruned
		}
		data, err := os.ReadFile(filepath.Join(d.Dir, name))
		if err != nil {
			d.report(name, err)
			continue
		}
		sum := checksum(data)
		if d.applied[name] == sum {
			continue
		}
		start := time.Now()
		n, err := d.applyFile(ctx, name, data)
		if err != nil {
			d.report(name, err)
			continue
		}
		d.applied[name] = sum
		delete(d.lastErr, name)
		klog.Infof("applied %s (%d objects) in %.2fs", name, n, time.Since(start).Seconds())
	}
	// Files gone from the folder: remove what they made. The inventories
	// are listed once (files deleted while the server was down); after that
	// only this loop writes them, so the folder alone tells what is gone.
	if d.known == nil {
		invs, err := d.client.CoreV1().ConfigMaps(inventoryNS).List(ctx, metav1.ListOptions{LabelSelector: InventoryLabel + "=true"})
		if err != nil {
			d.report("", fmt.Errorf("list inventories: %w", err))
			return
		}
		d.known = map[string]bool{}
		for _, inv := range invs.Items {
			if name := inv.Annotations[FileAnnotation]; name != "" {
				d.known[name] = true
			}
		}
	}
	for name := range d.known {
		if present[name] {
			continue
		}
		inv, err := d.inventory(ctx, name)
		if err == nil && inv != nil {
			err = d.removeFile(ctx, inv)
		}
		if err != nil {
			d.report(name, err)
			continue
		}
		delete(d.known, name)
		delete(d.applied, name)
		delete(d.lastErr, name)
	}
}

// report logs an error once until it changes.
func (d *Deployer) report(name string, err error) {
	msg := err.Error()
	if d.lastErr[name] == msg {
		return
	}
	d.lastErr[name] = msg
	if name == "" {
		klog.Errorf("manifests: %s (will retry)", msg)
		return
	}
	klog.Errorf("manifest %s: %s (will retry)", name, msg)
}

func checksum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// Decode reads every object of a multi-document YAML or JSON manifest
// (List kinds are flattened). An error names the document.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", doc, err)
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
			continue
		}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document %d: apiVersion, kind and metadata.name are required", doc)
		}
		out = append(out, u)
	}
}

// ref identifies an applied object in an inventory.
type ref struct {
	APIVersion, Kind, Namespace, Name string
}

func (r ref) String() string {
	return strings.Join([]string{r.APIVersion, r.Kind, r.Namespace, r.Name}, " ")
}

func parseRef(line string) (ref, bool) {
	f := strings.Split(line, " ")
	if len(f) != 4 {
		return ref{}, false
	}
	return ref{f[0], f[1], f[2], f[3]}, true
}

// applyOrder puts what other objects need first.
func applyOrder(kind string) int {
	switch kind {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	case "ServiceAccount", "ClusterRole", "Role", "PriorityClass", "StorageClass", "ConfigMap", "Secret":
		return 2
	}
	return 3
}

// applyFile applies the objects of one file and prunes the ones the file
// no longer holds. It returns the number of objects applied.
func (d *Deployer) applyFile(ctx context.Context, name string, data []byte) (int, error) {
	objs, err := Decode(data)
	if err != nil {
		return 0, err
	}
	sort.SliceStable(objs, func(i, j int) bool { return applyOrder(objs[i].GetKind()) < applyOrder(objs[j].GetKind()) })
	inv, err := d.inventory(ctx, name)
	if err != nil {
		return 0, err
	}
	old := refsOf(inv)
	var applied []ref
	var errs []string
	for _, o := range objs {
		r, err := d.apply(ctx, name, o)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		applied = append(applied, r)
	}
	keep := map[ref]bool{}
	for _, r := range applied {
		keep[r] = true
	}
	if len(errs) > 0 {
		// Nothing is pruned after a partial apply; the inventory keeps
		// both the old and the new objects so a later pass can.
		for r := range old {
			keep[r] = true
		}
		if err := d.saveInventory(ctx, inv, name, keep); err != nil {
			errs = append(errs, err.Error())
		}
		return 0, errors.New(strings.Join(errs, "; "))
	}
	for r := range old {
		if keep[r] {
			continue
		}
		if err := d.delete(ctx, name, r); err != nil {
			keep[r] = true // retried with the next change or restart
			klog.Errorf("manifest %s: prune %s %s: %v", name, r.Kind, r.Name, err)
			continue
		}
		klog.Infof("manifest %s: removed %s %s (no longer in the file)", name, r.Kind, nsName(r))
	}
	return len(applied), d.saveInventory(ctx, inv, name, keep)
}

func nsName(r ref) string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

// mapping finds the resource of an object's kind; a kind the cached
// discovery does not know makes it look again (a CRD applied just before).
func (d *Deployer) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		d.mapper.Reset()
		m, err = d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	return m, err
}

func (d *Deployer) resource(m *meta.RESTMapping, ns string) dynamic.ResourceInterface {
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return d.dynamic.Resource(m.Resource).Namespace(ns)
	}
	return d.dynamic.Resource(m.Resource)
}

func (d *Deployer) apply(ctx context.Context, file string, o *unstructured.Unstructured) (ref, error) {
	gvk := o.GroupVersionKind()
	m, err := d.mapping(gvk)
	if err != nil {
		return ref{}, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	ns := ""
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns = o.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		o.SetNamespace(ns)
	} else {
		o.SetNamespace("")
	}
	ann := o.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[FileAnnotation] = file
	o.SetAnnotations(ann)
	if _, err := d.resource(m, ns).Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return ref{}, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	return ref{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: ns, Name: o.GetName()}, nil
}

// delete removes one object the file made, unless another file has since
// taken it over.
func (d *Deployer) delete(ctx context.Context, file string, r ref) error {
	gv, err := schema.ParseGroupVersion(r.APIVersion)
	if err != nil {
		return nil // not something distro could have applied
	}
	m, err := d.mapping(gv.WithKind(r.Kind))
	if meta.IsNoMatchError(err) {
		return nil // its kind is gone (a CRD removed): so is the object
	}
	if err != nil {
		return err
	}
	res := d.resource(m, r.Namespace)
	cur, err := res.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if owner := cur.GetAnnotations()[FileAnnotation]; owner != "" && owner != file {
		return nil
	}
	bg := metav1.DeletePropagationBackground
	err = res.Delete(ctx, r.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// removeFile deletes everything a deleted file made, then its inventory.
func (d *Deployer) removeFile(ctx context.Context, inv *corev1.ConfigMap) error {
	name := inv.Annotations[FileAnnotation]
	var errs []string
	n := 0
	for r := range refsOf(inv) {
		if err := d.delete(ctx, name, r); err != nil {
			errs = append(errs, fmt.Sprintf("%s %s: %v", r.Kind, nsName(r), err))
			continue
		}
		n++
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove objects of the deleted file: %s", strings.Join(errs, "; "))
	}
	if err := d.client.CoreV1().ConfigMaps(inventoryNS).Delete(ctx, inv.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	klog.Infof("manifest %s was deleted: removed its %d objects", name, n)
	return nil
}

// InventoryName is the ConfigMap that records what file made.
func InventoryName(file string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(file) {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 200 {
		s = s[:200]
	}
	// The hash keeps names distinct after the character mapping.
	return "distro-addon." + strings.Trim(s, "-.") + "." + checksum([]byte(file))[:8]
}

func (d *Deployer) inventory(ctx context.Context, file string) (*corev1.ConfigMap, error) {
	cm, err := d.client.CoreV1().ConfigMaps(inventoryNS).Get(ctx, InventoryName(file), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cm, err
}

func refsOf(inv *corev1.ConfigMap) map[ref]bool {
	out := map[ref]bool{}
	if inv == nil {
		return out
	}
	for _, line := range strings.Split(inv.Data[inventoryKey], "\n") {
		if r, ok := parseRef(line); ok {
			out[r] = true
		}
	}
	return out
}

func (d *Deployer) saveInventory(ctx context.Context, inv *corev1.ConfigMap, file string, refs map[ref]bool) error {
	if d.known != nil {
		d.known[file] = true
	}
	lines := make([]string, 0, len(refs))
	for r := range refs {
		lines = append(lines, r.String())
	}
	sort.Strings(lines)
	data := map[string]string{inventoryKey: strings.Join(lines, "\n")}
	cms := d.client.CoreV1().ConfigMaps(inventoryNS)
	if inv == nil {
		_, err := cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name:        InventoryName(file),
				Labels:      map[string]string{InventoryLabel: "true"},
				Annotations: map[string]string{FileAnnotation: file},
			},
			Data: data,
		}, metav1.CreateOptions{})
		return err
	}
	inv = inv.DeepCopy()
	inv.Data = data
	_, err := cms.Update(ctx, inv, metav1.UpdateOptions{})
	return err
}
