package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"distro/manifests"
)

const addonClients = `
apiVersion: v1
kind: Pod
metadata: {name: dns-client}
spec:
  containers:
  - name: c
    image: ` + TestImage + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "exec sleep 100000"]
---
apiVersion: v1
kind: Service
metadata: {name: dns-target}
spec:
  selector: {app: nothing}
  ports: [{port: 80}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
`

// pvcPod runs once with the claim "data" mounted at /data.
func pvcPod(name string, command ...string) string {
	return `
apiVersion: v1
kind: Pod
metadata: {name: ` + name + `}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: ` + TestImage + `
    imagePullPolicy: Never
    command: ["` + strings.Join(command, `", "`) + `"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
`
}

// burnManifest: pods that burn CPU until the file /stop/now exists (a
// host folder, so the test can stop every replica's load at once), under
// an HPA that scales on 50% of a 50m request, down without delay.
func burnManifest(stopDir string) string {
	return `
apiVersion: apps/v1
kind: Deployment
metadata: {name: burn}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: ` + TestImage + `
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "while [ ! -f /stop/now ]; do :; done; exec sleep 100000"]
        resources:
          requests: {cpu: 50m}
          limits: {cpu: 200m}
        volumeMounts: [{name: stop, mountPath: /stop}]
      volumes:
      - name: stop
        hostPath: {path: ` + stopDir + `, type: Directory}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 5}]
`
}

// TestPackagedAddons: a fresh server brings up cluster DNS, local-path
// storage and metrics-server from the images carried in the binary, and
// keeps the cluster in step with its manifests folder.
func TestPackagedAddons(t *testing.T) {
	requireRoot(t)
	// Pods inherit the resolver file given with --resolv-conf (its search
	// domain is checked below; the nameserver is never reached).
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.99\nsearch example.test\n"), 0o644)
	s := NewServer(t, "--resolv-conf", resolv)
	withTestImage(t, s.DataDir)
	start := time.Now()
	s.Start()

	// Every packaged Deployment becomes Available, and nothing was pulled.
	Eventually(t, 2*time.Minute, "packaged Deployments created", func() error {
		out, _ := s.Kubectl("get", "deployments", "-n", "kube-system", "-o", "name")
		for _, d := range []string{"coredns", "local-path-provisioner", "metrics-server"} {
			if !strings.Contains(out, "deployment.apps/"+d) {
				return fmt.Errorf("no %s yet: %s", d, out)
			}
		}
		return nil
	})
	s.MustKubectl("wait", "-n", "kube-system", "--for=condition=Available", "deployment", "--all", "--timeout=180s")
	t.Logf("kube-system Deployments Available %.1fs after start", time.Since(start).Seconds())
	// A single server admits no other server: it runs distro's controllers
	// (which applied the add-ons), the scheduler and the controller-manager
	// without renewing a Lease.
	for _, lease := range []string{"distro-controllers", "kube-scheduler", "kube-controller-manager"} {
		if out, err := s.Kubectl("get", "lease", "-n", "kube-system", lease, "-o", "name"); err == nil || !strings.Contains(out, "NotFound") {
			t.Errorf("a single server has the Lease kube-system/%s: %v %s", lease, err, out)
		}
	}
	if out := s.MustKubectl("get", "events", "-A", "--field-selector", "reason=Pulling", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("images were pulled: %s", out)
	}

	// The add-ons' pods share one containerd shim (their shim group): they
	// are the node's only pods yet, so it runs one shim, the parent of
	// their pause and main processes (3 each).
	shims := shimsOf(s.DataDir)
	if len(shims) != 1 {
		t.Errorf("the add-ons run in %d shims, want 1: %v", len(shims), shims)
	} else if kids := childrenOf(shims[0]); len(kids) < 6 {
		t.Errorf("the add-ons' shim is the parent of %d processes, want at least their 3 pause and 3 main processes: %v", len(kids), kids)
	}

	manifest := filepath.Join(t.TempDir(), "clients.yaml")
	os.WriteFile(manifest, []byte(addonClients+"---"+pvcPod("writer", "/bin/sh", "-c", "echo written-by-writer > /data/file")), 0o644)
	s.MustKubectl("apply", "-f", manifest)

	// Cluster DNS: the kubernetes Service and a Service of our own.
	s.MustKubectl("wait", "--for=condition=Ready", "pod/dns-client", "--timeout=120s")
	apiIP := s.MustKubectl("get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
	targetIP := s.MustKubectl("get", "svc", "dns-target", "-o", "jsonpath={.spec.clusterIP}")
	for name, want := range map[string]string{
		"kubernetes.default.svc.cluster.local": apiIP,
		"dns-target.default.svc.cluster.local": targetIP,
	} {
		Eventually(t, 60*time.Second, "resolve "+name, func() error {
			out, err := s.Kubectl("exec", "dns-client", "--", "nslookup", name)
			if err != nil || !strings.Contains(out, "Address: "+want) {
				return fmt.Errorf("want %s: %v\n%s", want, err, out)
			}
			return nil
		})
	}

	// Node names resolve too (the NodeHosts key distro keeps in CoreDNS's
	// ConfigMap; the kubelet refreshes the mounted file within a minute).
	nodeName := s.MustKubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	nodeIP := s.MustKubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	Eventually(t, 2*time.Minute, "resolve the node name "+nodeName, func() error {
		out, err := s.Kubectl("exec", "dns-client", "--", "nslookup", nodeName+".")
		if err != nil || !strings.Contains(out, "Address: "+nodeIP) {
			return fmt.Errorf("want %s: %v\n%s", nodeIP, err, out)
		}
		return nil
	})

	// Short names resolve through the search path the kubelet writes
	// (busybox's nslookup does not use it, so check the file).
	if out := s.MustKubectl("exec", "dns-client", "--", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver 10.43.0.10") || !strings.Contains(out, "search default.svc.cluster.local svc.cluster.local cluster.local example.test") {
		t.Errorf("pod resolv.conf:\n%s", out)
	}

	// local-path: the claim binds, one pod writes, another reads it back.
	Eventually(t, 2*time.Minute, "writer pod Succeeded", func() error {
		phase := s.MustKubectl("get", "pod", "writer", "-o", "jsonpath={.status.phase}")
		if phase != "Succeeded" {
			return fmt.Errorf("phase %q", phase)
		}
		return nil
	})
	if phase := s.MustKubectl("get", "pvc", "data", "-o", "jsonpath={.status.phase}"); phase != "Bound" {
		t.Errorf("pvc data is %q", phase)
	}
	if sc := s.MustKubectl("get", "pvc", "data", "-o", "jsonpath={.spec.storageClassName}"); sc != "local-path" {
		t.Errorf("pvc storage class %q, want the default local-path", sc)
	}
	reader := filepath.Join(t.TempDir(), "reader.yaml")
	os.WriteFile(reader, []byte(pvcPod("reader", "/bin/cat", "/data/file")), 0o644)
	s.MustKubectl("apply", "-f", reader)
	Eventually(t, 2*time.Minute, "reader reads the data back", func() error {
		out, err := s.Kubectl("logs", "reader")
		if err != nil || !strings.Contains(out, "written-by-writer") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if files, _ := filepath.Glob(filepath.Join(s.DataDir, "storage", "*", "file")); len(files) != 1 {
		t.Errorf("volume data not under <data-dir>/storage: %v", files)
	}

	// Each add-on's process hands back the pages of its executable that its
	// start touched (AddonSettle after it started), and serves on: the
	// metrics and the HPA below run after it.
	for image := range manifests.AddonImages() {
		re := regexp.MustCompile(`add-on ` + regexp.QuoteMeta(image) + ` \(process \d+\): .* handed back to the kernel: file-backed RSS (\d+) MB -> (\d+) MB`)
		Eventually(t, 2*time.Minute, image+"'s pages handed back", func() error {
			m := re.FindStringSubmatch(s.Log())
			if m == nil {
				return fmt.Errorf("no line %q in the log", re)
			}
			before, _ := strconv.Atoi(m[1])
			after, _ := strconv.Atoi(m[2])
			if after >= before {
				return fmt.Errorf("file-backed RSS did not shrink: %s", m[0])
			}
			return nil
		})
	}

	// Resource metrics through the aggregation layer.
	for _, args := range [][]string{{"top", "nodes"}, {"top", "pods", "-A"}} {
		Eventually(t, 2*time.Minute, "kubectl "+strings.Join(args, " "), func() error {
			out, err := s.Kubectl(args...)
			if err != nil || !strings.Contains(out, "CPU(cores)") || !strings.Contains(out, "m ") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	t.Logf("kubectl top:\n%s", s.MustKubectl("top", "pods", "-n", "kube-system"))

	// The HPA scales a CPU-burning Deployment up, and down once the load stops.
	stopDir := t.TempDir()
	burn := filepath.Join(t.TempDir(), "burn.yaml")
	os.WriteFile(burn, []byte(burnManifest(stopDir)), 0o644)
	s.MustKubectl("apply", "-f", burn)
	replicas := func() int {
		n, _ := strconv.Atoi(s.MustKubectl("get", "deployment", "burn", "-o", "jsonpath={.spec.replicas}"))
		return n
	}
	Eventually(t, 4*time.Minute, "HPA scales burn up", func() error {
		if n := replicas(); n < 2 {
			hpa, _ := s.Kubectl("get", "hpa", "burn")
			return fmt.Errorf("%d replicas\n%s", n, hpa)
		}
		return nil
	})
	t.Logf("scaled up: %s", s.MustKubectl("get", "hpa", "burn"))
	os.WriteFile(filepath.Join(stopDir, "now"), nil, 0o644)
	Eventually(t, 4*time.Minute, "HPA scales burn back down", func() error {
		if n := replicas(); n != 1 {
			hpa, _ := s.Kubectl("get", "hpa", "burn")
			return fmt.Errorf("%d replicas\n%s", n, hpa)
		}
		return nil
	})
	s.MustKubectl("delete", "-f", burn, "--wait=false")

	// A manifest dropped into the folder is applied, an object removed from
	// it is pruned, and deleting the file removes the rest.
	dropped := filepath.Join(s.DataDir, "server", "manifests", "team", "extra.yaml") // subfolders count
	os.MkdirAll(filepath.Dir(dropped), 0o755)
	two := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dropped-a, namespace: default}\ndata: {k: v}\n---\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dropped-b, namespace: default}\ndata: {k: v}\n"
	os.WriteFile(dropped, []byte(two), 0o644)
	exists := func(name string, want bool) func() error {
		return func() error {
			out, err := s.Kubectl("get", "configmap", name, "-o", "name")
			if got := err == nil && strings.Contains(out, name); got != want {
				return fmt.Errorf("configmap %s exists=%v, want %v: %s", name, got, want, out)
			}
			return nil
		}
	}
	Eventually(t, 30*time.Second, "dropped manifest applied", exists("dropped-a", true))
	Eventually(t, 30*time.Second, "dropped manifest applied", exists("dropped-b", true))
	os.WriteFile(dropped, []byte(two[:strings.Index(two, "---")]), 0o644)
	Eventually(t, 30*time.Second, "object removed from the file is pruned", exists("dropped-b", false))
	if err := exists("dropped-a", true)(); err != nil {
		t.Error(err)
	}
	os.Remove(dropped)
	Eventually(t, 30*time.Second, "deleted file's objects removed", exists("dropped-a", false))
	if !strings.Contains(s.Log(), "manifest team/extra.yaml was deleted") {
		t.Errorf("no log line for the deleted manifest")
	}

	// --disable removes a packaged add-on from a running cluster.
	if err, _ := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	s.args = append(s.args, "--disable", "metrics-server")
	s.Start()
	Eventually(t, 60*time.Second, "metrics-server removed", func() error {
		out, _ := s.Kubectl("get", "deployment,apiservice", "-A", "-o", "name")
		if strings.Contains(out, "metrics-server") || strings.Contains(out, "v1beta1.metrics.k8s.io") {
			return fmt.Errorf("still there: %s", out)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "manifests", "metrics-server.yaml")); !os.IsNotExist(err) {
		t.Errorf("metrics-server.yaml still in the manifests folder: %v", err)
	}
	if out := s.MustKubectl("get", "deployment", "-n", "kube-system", "coredns", "-o", "name"); !strings.Contains(out, "coredns") {
		t.Errorf("coredns went away with metrics-server: %s", out)
	}
}

// shimsOf lists the containerd shims of the node whose data dir is
// dataDir (their executable is unpacked under it).
func shimsOf(dataDir string) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range procs {
		path, err := os.Readlink(exe)
		if err != nil || filepath.Base(path) != "containerd-shim-runc-v2" || !strings.HasPrefix(path, dataDir+"/") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(exe)))
		out = append(out, pid)
	}
	return out
}

// childrenOf lists the child processes of pid.
func childrenOf(pid int) []string {
	var out []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		data, _ := os.ReadFile(f)
		out = append(out, strings.Fields(string(data))...)
	}
	return out
}
