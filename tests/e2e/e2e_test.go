// Package e2e runs a multi-node distro cluster in Docker: one server and two
// agents, each a container of the image built by `make image`, on a
// user-defined network.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

var image = envOr("DISTRO_IMAGE", "distro:dev")

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// runArgs are what a node container needs on these hosts. --privileged is
// not usable where root lacks CAP_SYS_RESOURCE, so the capabilities are
// given one by one.
var runArgs = []string{"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
	"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
	"--device", "/dev/kmsg", "--tmpfs", "/run", "--tmpfs", "/var/run", "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"}

// cluster is the Docker network of one test's node containers. The
// containers (with their volumes) and the network are removed when the
// test ends; when it failed, each node's last log lines are printed (whole
// logs go to E2E_LOG_DIR when set).
type cluster struct {
	net     string
	nodes   []string
	volumes []string
}

func newCluster(t *testing.T, prefix string) *cluster {
	t.Helper()
	c := &cluster{net: fmt.Sprintf("%s-%d", prefix, os.Getpid())}
	guardDockerUser(t)
	must(t, "network", "create", c.net)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				out, _ := docker("logs", "--tail", "40", n)
				t.Logf("--- %s\n%s", n, out)
				if dir := os.Getenv("E2E_LOG_DIR"); dir != "" {
					full, _ := docker("logs", n)
					os.WriteFile(dir+"/"+n+".log", []byte(full), 0o644)
				}
			}
		}
		docker(append([]string{"rm", "-f", "-v"}, c.nodes...)...)
		for _, v := range c.volumes {
			docker("volume", "rm", v)
		}
		docker("network", "rm", c.net)
	})
	return c
}

// node names a node container of the cluster (removed with it).
func (c *cluster) node(name string) string {
	n := c.net + "-" + name
	c.nodes = append(c.nodes, n)
	return n
}

// needNodeImage skips a test where no Docker engine runs and fails it
// when the node image is missing.
func needNodeImage(t *testing.T) {
	t.Helper()
	if _, err := docker("info"); err != nil {
		t.Skip("no Docker engine runs here: the multi-node e2e needs one")
	}
	if _, err := docker("image", "inspect", image); err != nil {
		t.Fatalf("image %s not found: build it with make image", image)
	}
}

func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(args...)
	if err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return out
}

// kubectlOn runs distro kubectl in a node container. It returns stdout,
// and stderr too when it fails: discovery warnings (an aggregated API not
// ready yet) never mix into parsed output.
func kubectlOn(node string, args ...string) (string, error) {
	cmd := exec.Command("docker", append([]string{"exec", node, "distro", "kubectl"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out) + stderr.String()), err
	}
	return strings.TrimSpace(string(out)), nil
}

// applyOn applies a manifest with kubectl in a node container.
func applyOn(t *testing.T, node, manifest string) {
	t.Helper()
	cmd := exec.Command("docker", "exec", "-i", node, "distro", "kubectl", "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply on %s: %v\n%s", node, err, out)
	}
}

// runNode is `docker run` of a node container called name (its hostname,
// so its node name, too) on the network net: opts are more docker options
// (-d, -v …), args distro's.
func runNode(net, name string, opts []string, args ...string) (string, error) {
	a := append([]string{"run", "--name", name, "--hostname", name, "--network", net}, opts...)
	a = append(append(append(a, runArgs...), image), args...)
	return docker(a...)
}

// startNode starts a node container in the background.
func startNode(t *testing.T, net, name string, args ...string) {
	t.Helper()
	if out, err := runNode(net, name, []string{"-d"}, args...); err != nil {
		t.Fatalf("start %s: %v\n%s", name, err, out)
	}
}

// serverToken waits for a server container's join token.
func serverToken(t *testing.T, server string) string {
	t.Helper()
	var token string
	eventually(t, 2*time.Minute, server+"'s token", func() error {
		out, err := docker("exec", server, "cat", "/var/lib/distro/server/token")
		if err != nil || !strings.HasPrefix(out, "K10") {
			return fmt.Errorf("%v %s", err, out)
		}
		token = out
		return nil
	})
	return token
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s: not done after %s: %v", what, timeout, err)
}

func TestCluster(t *testing.T) {
	needNodeImage(t)
	net := fmt.Sprintf("distro-e2e-%d", os.Getpid())
	s, a1, a2 := net+"-s1", net+"-a1", net+"-a2"
	kubectl := func(args ...string) (string, error) { return kubectlOn(s, args...) }
	guardDockerUser(t)
	must(t, "network", "create", net)
	t.Cleanup(func() {
		if t.Failed() {
			for _, args := range [][]string{{"get", "pods", "-A", "-o", "wide"}, {"get", "endpointslices", "-A"}, {"get", "events", "-A", "--sort-by=.lastTimestamp"}} {
				out, _ := kubectl(args...)
				t.Logf("--- kubectl %s\n%s", strings.Join(args, " "), out)
			}
			for _, c := range []string{s, a1, a2} {
				out, _ := docker("logs", "--tail", "30", c)
				t.Logf("--- %s\n%s", c, out)
				all, _ := docker("logs", c)
				var np []string
				for _, line := range strings.Split(all, "\n") {
					if strings.Contains(line, "network policy:") {
						np = append(np, line)
					}
				}
				table, _ := docker("exec", c, "nft", "list", "table", "inet", "distro-netpol")
				t.Logf("--- %s: network policy log lines\n%s\n--- nft list table inet distro-netpol\n%s", c, strings.Join(np, "\n"), table)
			}
		}
		docker("rm", "-f", "-v", s, a1, a2, net+"-bad1", net+"-bad2")
		docker("network", "rm", net)
	})
	mustKubectl := func(args ...string) string {
		t.Helper()
		out, err := kubectl(args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return out
	}

	startNode(t, net, s, "server")
	token := serverToken(t, s)
	server := "https://" + s + ":6443"

	// Wrong secret, foreign CA hash: the agent exits non-zero, says why, and
	// leaves no node.
	for name, tok := range map[string]string{
		net + "-bad1": token[:strings.LastIndex(token, ":")+1] + "wrong",
		net + "-bad2": "K10" + strings.Repeat("0", 64) + token[strings.Index(token, "::"):],
	} {
		out, err := runNode(net, name, nil, "agent", "--server", server, "--token", tok)
		if err == nil || !(strings.Contains(out, "rejected the token") || strings.Contains(out, "does not match the CA hash")) {
			t.Errorf("agent with a bad token: err=%v\n%s", err, out)
		}
	}

	startNode(t, net, a1, "agent", "--server", server, "--token", token)
	startNode(t, net, a2, "agent", "--server", server, "--token", token)
	eventually(t, 3*time.Minute, "3 nodes Ready", func() error {
		out, err := kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil || strings.Count(out, "=True") != 3 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if out, _ := kubectl("get", "nodes", "-o", "name"); strings.Contains(out, "bad") {
		t.Errorf("a refused agent left a node: %s", out)
	}
	// A node in a container reports distro as its OS image.
	if out := mustKubectl("get", "nodes", "-o", "jsonpath={.items[*].status.nodeInfo.osImage}"); strings.Count(out, "distro ") != 3 {
		t.Errorf("OS image of the nodes: %q, want distro <version> on all 3", out)
	}

	// Images reach every node through the airgap import (ctr import here).
	for _, n := range []string{s, a1, a2} {
		must(t, "cp", os.Getenv("E2E_TEST_IMAGE_TAR"), n+":/tmp/test.tar")
		must(t, "exec", n, "distro", "ctr", "images", "import", "/tmp/test.tar")
	}
	for _, n := range []string{a1, a2} {
		manifest := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-%s","labels":{"app":"web-%s"}},
"spec":{"nodeName":%q,"containers":[{"name":"c","image":"distro.test/busybox:1","imagePullPolicy":"Never",
"command":["/bin/sh","-c","echo hello-%s > /www/index.html; echo started; exec httpd -f -p 8080 -h /www"]}]}}`, n, n, n, n)
		applyOn(t, s, manifest)
	}
	mustKubectl("expose", "pod", "web-"+a2, "--name", "web2", "--port", "80", "--target-port", "8080")
	mustKubectl("wait", "--for=condition=Ready", "pod/web-"+a1, "pod/web-"+a2, "--timeout=120s")
	ip2 := mustKubectl("get", "pod", "web-"+a2, "-o", "jsonpath={.status.podIP}")
	cip := mustKubectl("get", "svc", "web2", "-o", "jsonpath={.spec.clusterIP}")
	for what, target := range map[string]string{"pod IP (VXLAN)": ip2 + " 8080", "ClusterIP": cip + " 80"} {
		eventually(t, 30*time.Second, "agent 1 → agent 2 by "+what, func() error {
			out, err := kubectl("exec", "web-"+a1, "--", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 `+target)
			if err != nil || !strings.Contains(out, "hello-"+a2) {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	// Cluster DNS (the packaged CoreDNS, wherever it runs) answers pods on
	// every node.
	mustKubectl("wait", "-n", "kube-system", "--for=condition=Available", "deployment/coredns", "--timeout=120s")
	for _, n := range []string{a1, a2} {
		eventually(t, 60*time.Second, "DNS from a pod on "+n, func() error {
			out, err := kubectl("exec", "web-"+n, "--", "nslookup", "web2.default.svc.cluster.local")
			if err != nil || !strings.Contains(out, "Address: "+cip) {
				return fmt.Errorf("want %s: %v: %s", cip, err, out)
			}
			return nil
		})
	}
	// Docker's resolver (127.0.0.11) is not handed to CoreDNS, which would
	// forward to itself, detect the loop and exit.
	if out := mustKubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "jsonpath={.items[*].status.containerStatuses[*].restartCount}"); out != "0" {
		t.Errorf("CoreDNS restarted (%s times)", out)
	}
	if out := mustKubectl("logs", "web-"+a2); !strings.Contains(out, "started") {
		t.Errorf("kubectl logs on an agent: %q", out)
	}
	if out := mustKubectl("exec", "web-"+a2, "--", "cat", "/www/index.html"); !strings.Contains(out, "hello-"+a2) {
		t.Errorf("kubectl exec on an agent: %q", out)
	}

	// NetworkPolicy across nodes: a policy on web-<a2> admits only pods of
	// one namespace; clients of both namespaces on both agents (ingress is
	// enforced on a2, for traffic over cni0 and over VXLAN alike).
	clientPod := func(ns, name, node string) string {
		return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":%q},"spec":{"nodeName":%q,
"containers":[{"name":"c","image":"distro.test/busybox:1","imagePullPolicy":"Never","command":["/bin/sh","-c","exec sleep 100000"]}]}}`, name, ns, node)
	}
	type client struct{ ns, name string }
	var clients []client
	for _, ns := range []string{"np-allowed", "np-other"} {
		mustKubectl("create", "namespace", ns)
		for _, n := range []string{a1, a2} {
			c := client{ns, "client-" + n}
			applyOn(t, s, clientPod(c.ns, c.name, n))
			clients = append(clients, c)
		}
	}
	for _, c := range clients {
		mustKubectl("wait", "-n", c.ns, "--for=condition=Ready", "pod/"+c.name, "--timeout=120s")
	}
	reach := func(c client) error {
		out, err := kubectl("exec", "-n", c.ns, c.name, "--", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 `+ip2+` 8080`)
		if err != nil || !strings.Contains(out, "hello-"+a2) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	expect := func(what string, allowed func(client) bool) {
		for _, c := range clients {
			c := c
			eventually(t, 30*time.Second, fmt.Sprintf("%s: %s/%s → web-%s %s", what, c.ns, c.name, a2, map[bool]string{true: "reaches", false: "blocked"}[allowed(c)]), func() error {
				err := reach(c)
				switch {
				case allowed(c) && err != nil:
					return err
				case !allowed(c) && err == nil:
					return fmt.Errorf("reached it")
				}
				return nil
			})
		}
	}
	expect("no policy", func(client) bool { return true })
	applyOn(t, s, fmt.Sprintf(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"only-np-allowed","namespace":"default"},
"spec":{"podSelector":{"matchLabels":{"app":"web-%s"}},"policyTypes":["Ingress"],
"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"np-allowed"}}}]}]}}`, a2))
	expect("policy", func(c client) bool { return c.ns == "np-allowed" })
	mustKubectl("delete", "networkpolicy", "only-np-allowed")
	expect("policy deleted", func(client) bool { return true })

	// The nodes share the host's cgroup tree (--cgroupns host), but each
	// kubelet has its own cgroup root: none takes another node's pods for
	// orphans to kill (each kubelet looks every 2 s).
	time.Sleep(5 * time.Second)
	for _, n := range []string{s, a1, a2} {
		if out, _ := docker("logs", n); strings.Contains(out, "orphaned pod cgroup") || strings.Contains(out, "Orphaned pod found, removing pod cgroups") {
			t.Errorf("%s's kubelet treated another node's pods as orphans", n)
		}
	}

	// docker kill an agent: its node turns NotReady and a Deployment's pods
	// move to the remaining nodes; restarted, the agent rejoins as itself.
	dep := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"spread"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"spread"}},
"template":{"metadata":{"labels":{"app":"spread"}},"spec":{"tolerations":[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":5},{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":5}],
"containers":[{"name":"c","image":"distro.test/busybox:1","imagePullPolicy":"Never","command":["/bin/sh","-c","exec sleep 100000"]}]}}}}`
	applyOn(t, s, dep)
	mustKubectl("wait", "--for=condition=Available", "deployment/spread", "--timeout=120s")
	must(t, "kill", a1)
	eventually(t, 3*time.Minute, a1+" NotReady", func() error {
		out, _ := kubectl("get", "node", a1, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if out == "True" {
			return fmt.Errorf("still Ready")
		}
		return nil
	})
	eventually(t, 3*time.Minute, "spread pods recreated off "+a1, func() error {
		out, err := kubectl("get", "pods", "-l", "app=spread", "--field-selector", "status.phase=Running", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {.metadata.deletionTimestamp}|{end}")
		if err != nil {
			return err
		}
		running := 0
		for _, p := range strings.Split(out, "|") {
			f := strings.Fields(p)
			if len(f) == 1 && f[0] != a1 {
				running++
			}
		}
		if running < 3 {
			return fmt.Errorf("%d of 3 running off %s: %s", running, a1, out)
		}
		return nil
	})
	must(t, "start", a1)
	eventually(t, 3*time.Minute, a1+" Ready again as the same node", func() error {
		out, err := kubectl("get", "node", a1, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// Cluster networks of the test clusters: distro's defaults.
var clusterNets = []string{"10.42.0.0/16", "10.43.0.0/16"}

// guardDockerUser keeps test traffic on this machine: a packet from a node
// container to a pod or service address that no rule inside the node
// caught would otherwise leave through Docker's NAT. The rules are added
// once and left in place (another test cluster may be running); they match
// only traffic arriving from Docker's bridges, never from cni0.
func guardDockerUser(t *testing.T) {
	t.Helper()
	if exec.Command("iptables", "-nL", "DOCKER-USER").Run() != nil {
		t.Log("no DOCKER-USER chain: Docker's iptables integration is off, nothing to guard")
		return
	}
	for _, in := range []string{"br-+", "docker0"} {
		for _, cidr := range clusterNets {
			rule := []string{"DOCKER-USER", "-i", in, "-d", cidr, "-m", "comment", "--comment", "distro test clusters: keep cluster traffic local", "-j", "REJECT"}
			if exec.Command("iptables", append([]string{"-C"}, rule...)...).Run() == nil {
				continue
			}
			if out, err := exec.Command("iptables", append([]string{"-I"}, rule...)...).CombinedOutput(); err != nil {
				t.Fatalf("iptables -I %v: %v\n%s", rule, err, out)
			}
		}
	}
}
