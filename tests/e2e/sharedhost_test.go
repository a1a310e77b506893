package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSharedHost: a node on the host and a 1-server + 1-agent cluster in
// Docker run side by side (the containers share the host's cgroup tree,
// --cgroupns host) while pods churn on all three for E2E_SHARED_HOST_SECONDS
// (default 300): no node's kubelet kills another's pods (a steady pod per
// node keeps its container, restart count 0). Then distro-killall.sh for the
// host node's data dir stops it and leaves the Docker nodes Ready with their
// pods running. Needs DISTRO_BIN (the host binary); make e2e-shared-host.
func TestSharedHost(t *testing.T) {
	needNodeImage(t)
	bin := os.Getenv("DISTRO_BIN")
	if bin == "" {
		t.Skip("DISTRO_BIN not set: the host node needs the binary (make e2e-shared-host)")
	}
	seconds := 300
	fmt.Sscan(envOr("E2E_SHARED_HOST_SECONDS", "300"), &seconds)

	// The host node: its own cluster networks, no add-ons.
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	kubeconfig := filepath.Join(dir, "kubeconfig.yaml")
	os.WriteFile(filepath.Join(dir, "config.yaml"), nil, 0o600)
	host := exec.Command(bin, "server", "--config", filepath.Join(dir, "config.yaml"), "--data-dir", data,
		"--write-kubeconfig", kubeconfig, "--cluster-cidr", "10.52.0.0/16", "--service-cidr", "10.53.0.0/16",
		"--cluster-dns", "10.53.0.10", "--disable", "coredns,local-storage,metrics-server")
	hostLog, _ := os.Create(filepath.Join(dir, "host.log"))
	host.Stdout, host.Stderr = hostLog, hostLog
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	killall := func() (string, error) {
		cmd := exec.Command("sh", "../../package/distro-killall.sh")
		cmd.Env = append(os.Environ(), "DISTRO_DATA_DIR="+data)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(dir, "host.log"))
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Logf("--- host node (last 40 lines)\n%s", strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		if host.ProcessState == nil {
			killall()
			host.Wait()
		}
	})
	hostKubectl := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"kubectl", "--kubeconfig", kubeconfig}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}

	// The Docker cluster.
	c := newCluster(t, "distro-shared")
	s1, a1 := c.node("s1"), c.node("a1")
	const secret = "shared-host-secret"
	startNode(t, c.net, s1, "server", "--token", secret)
	startNode(t, c.net, a1, "agent", "--server", "https://"+s1+":6443", "--token", secret)

	ready := func(kubectl func(...string) (string, error), want int) func() error {
		return func() error {
			out, err := kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
			if err != nil || strings.Count(out, "=True") != want {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
	}
	dockerKubectl := func(args ...string) (string, error) { return kubectlOn(s1, args...) }
	eventually(t, 3*time.Minute, "the host node Ready", ready(hostKubectl, 1))
	eventually(t, 3*time.Minute, "the Docker nodes Ready", ready(dockerKubectl, 2))

	// A steady pod per node, and a Deployment whose pods come and go.
	pod := func(name, node string) string {
		return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q},"spec":{"nodeName":%q,
"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10.2","imagePullPolicy":"Never"}]}}`, name, node)
	}
	churn := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"churn"},"spec":{"replicas":4,"selector":{"matchLabels":{"app":"churn"}},
"template":{"metadata":{"labels":{"app":"churn"}},"spec":{"terminationGracePeriodSeconds":0,
"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10.2","imagePullPolicy":"Never"}]}}}}`
	hostNode, err := hostKubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	hostApply := func(manifest string) {
		f := filepath.Join(t.TempDir(), "m.json")
		os.WriteFile(f, []byte(manifest), 0o600)
		if out, err := exec.Command(bin, "kubectl", "--kubeconfig", kubeconfig, "apply", "-f", f).CombinedOutput(); err != nil {
			t.Fatalf("apply on the host node: %v\n%s", err, out)
		}
	}
	hostApply(pod("steady", hostNode))
	hostApply(churn)
	applyOn(t, s1, pod("steady-s1", s1))
	applyOn(t, s1, pod("steady-a1", a1))
	applyOn(t, s1, churn)
	containerIDs := func(kubectl func(...string) (string, error)) string {
		out, _ := kubectl("get", "pods", "-l", "!app", "-o", `jsonpath={range .items[*]}{.metadata.name}:{.status.containerStatuses[0].containerID}:{.status.containerStatuses[0].restartCount} {end}`)
		return out
	}
	for _, k := range []func(...string) (string, error){hostKubectl, dockerKubectl} {
		if out, err := k("wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s"); err != nil {
			t.Fatalf("pods Ready: %v\n%s", err, out)
		}
	}
	before := []string{containerIDs(hostKubectl), containerIDs(dockerKubectl)}

	// Churn: every 10 s each Deployment changes size and a pod is deleted.
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		replicas := fmt.Sprint(2 + i%5)
		for _, k := range []func(...string) (string, error){hostKubectl, dockerKubectl} {
			k("scale", "deployment", "churn", "--replicas", replicas)
			if name, _ := k("get", "pods", "-l", "app=churn", "-o", "jsonpath={.items[0].metadata.name}"); name != "" {
				k("delete", "pod", name, "--wait=false")
			}
		}
		time.Sleep(10 * time.Second)
	}
	after := []string{containerIDs(hostKubectl), containerIDs(dockerKubectl)}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("a steady pod lost its container while the nodes shared the host:\nbefore %s\nafter  %s", before[i], after[i])
		}
	}
	hostOut, _ := os.ReadFile(filepath.Join(dir, "host.log"))
	logs := map[string]string{"host node": string(hostOut)}
	for _, n := range []string{s1, a1} {
		logs[n], _ = docker("logs", n)
	}
	for n, l := range logs {
		if strings.Contains(l, "orphaned pod cgroup") || strings.Contains(l, "Orphaned pod found, removing pod cgroups") {
			t.Errorf("%s's kubelet treated another node's pods as orphans", n)
		}
	}

	// The host node's clean-up leaves the Docker nodes alone.
	if out, err := killall(); err != nil {
		t.Fatalf("distro-killall.sh: %v\n%s", err, out)
	}
	host.Wait()
	time.Sleep(10 * time.Second)
	if err := ready(dockerKubectl, 2)(); err != nil {
		t.Errorf("the Docker nodes after the host node's killall: %v", err)
	}
	if got := containerIDs(dockerKubectl); got != before[1] {
		t.Errorf("the Docker nodes' steady pods after the host node's killall:\nbefore %s\nafter  %s", before[1], got)
	}
	if out, err := dockerKubectl("get", "pods", "-l", "app=churn", "--field-selector", "status.phase=Running", "-o", "name"); err != nil || !strings.Contains(out, "pod/") {
		t.Errorf("the Docker cluster's churn pods after the host node's killall: %v %s", err, out)
	}
	t.Logf("%d s of churn on 3 nodes sharing the host: steady pods kept their containers (%s | %s)", seconds, before[0], before[1])
}
