package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The pods of the NetworkPolicy test: a server (web page on 8080 "http"
// and 9090 "alt", probed by the kubelet) behind a ClusterIP Service, and
// clients in three namespaces.
const netpolManifest = `
apiVersion: v1
kind: Namespace
metadata: {name: np-a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-b, labels: {team: b}}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-c, labels: {team: c}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: np-a, labels: {app: server}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: ` + TestImage + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo netpol-ok > /www/index.html; httpd -p 9090 -h /www; exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}, {name: alt, containerPort: 9090}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 1}
    livenessProbe: {httpGet: {port: 8080, path: /}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: np-a}
spec:
  selector: {app: server}
  ports: [{port: 80, targetPort: http}]
` + netpolClient + "np-a\n  name: client\n  labels: {role: client}\n" +
	netpolClient + "np-a\n  name: other\n" +
	netpolClient + "np-b\n  name: client\n  labels: {role: client}\n" +
	netpolClient + "np-b\n  name: other\n" +
	netpolClient + "np-c\n  name: client\n  labels: {role: client}\n"

const netpolClient = `---
apiVersion: v1
kind: Pod
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: ` + TestImage + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "exec sleep 100000"]
metadata:
  namespace: `

// netpolConn is one connection attempt from a pod and whether it must
// succeed; the script prints netpol-ok when it does.
type netpolConn struct {
	ns, pod, what, script string
	want                  bool
}

func httpConn(ns, pod, addr string, port int, want bool) netpolConn {
	return netpolConn{ns, pod, fmt.Sprintf("http %s:%d", addr, port),
		fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 %s %d`, addr, port), want}
}

func TestNetworkPolicy(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("NetworkPolicy enforcement needs nft: %v", err)
	}
	s := NewServer(t)
	withTestImage(t, s.DataDir) // killall at the end deletes the table too
	s.Start()

	applyNow := func(yaml string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "np.yaml")
		if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		s.MustKubectl("apply", "-f", f)
	}
	apply := func(yaml string) {
		t.Helper()
		applyNow(yaml)
		// Enforcement follows within a few hundred milliseconds; the
		// checks below poll, this keeps a stale "allowed" from passing.
		time.Sleep(time.Second)
	}
	table := func() string {
		out, _ := exec.Command("nft", "list", "table", "inet", "distro-netpol").CombinedOutput()
		return string(out)
	}
	Eventually(t, 2*time.Minute, "node Ready", func() error {
		if !strings.Contains(s.Log(), " Ready in ") {
			return fmt.Errorf("no node Ready line yet")
		}
		return nil
	})
	apply(netpolManifest)
	for _, ns := range []string{"np-a", "np-b", "np-c"} {
		s.MustKubectl("wait", "-n", ns, "--for=condition=Ready", "pod", "--all", "--timeout=120s")
	}
	s.MustKubectl("-n", "kube-system", "wait", "--for=condition=Available", "deployment/coredns", "--timeout=120s")
	ip := func(ns, pod string) string {
		return s.MustKubectl("get", "pod", "-n", ns, pod, "-o", "jsonpath={.status.podIP}")
	}
	server, other := ip("np-a", "server"), ip("np-a", "other")
	svc := s.MustKubectl("get", "svc", "-n", "np-a", "server", "-o", "jsonpath={.spec.clusterIP}")
	dns := s.MustKubectl("get", "svc", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.spec.clusterIP}")
	if !strings.Contains(s.Log(), "network policy: enforcing NetworkPolicies") {
		t.Errorf("no start line of the NetworkPolicy controller in the log")
	}

	// expect runs the connections in parallel, each until it gives the
	// wanted result (20 s at most).
	expect := func(t *testing.T, conns ...netpolConn) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]string, len(conns))
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Now().Add(20 * time.Second)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					out, _ := exec.CommandContext(ctx, distroBin(t), "kubectl", "--kubeconfig", s.Kubeconfig,
						"exec", "-n", c.ns, c.pod, "--", "sh", "-c", c.script).CombinedOutput()
					cancel()
					got := strings.Contains(string(out), "netpol-ok")
					if got == c.want {
						return
					}
					if time.Now().After(deadline) {
						errs[i] = fmt.Sprintf("%s/%s → %s: succeeded = %v, want %v (output %q)", c.ns, c.pod, c.what, got, c.want, strings.TrimSpace(string(out)))
						return
					}
					time.Sleep(500 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Error(e)
			}
		}
	}
	nslookup := func(ns, pod string, want bool) netpolConn {
		return netpolConn{ns, pod, "DNS over UDP to " + dns,
			"nslookup -timeout=2 -retry=1 kubernetes.default.svc.cluster.local " + dns + " >/dev/null 2>&1 && echo netpol-ok", want}
	}
	nodeIP := s.MustKubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	apiserver := func(ns, pod string, want bool) netpolConn { // the node itself: input hook
		return netpolConn{ns, pod, fmt.Sprintf("TCP connect to the node %s:%d", nodeIP, s.Port),
			fmt.Sprintf("nc -w 2 %s %d </dev/null >/dev/null 2>&1 && echo netpol-ok", nodeIP, s.Port), want}
	}
	tcpDNS := func(ns, pod string, want bool) netpolConn {
		return netpolConn{ns, pod, "TCP connect to " + dns + ":53",
			"nc -w 2 " + dns + " 53 </dev/null >/dev/null 2>&1 && echo netpol-ok", want}
	}

	t.Run("no policy", func(t *testing.T) {
		expect(t, httpConn("np-a", "client", server, 8080, true), httpConn("np-b", "other", svc, 80, true),
			nslookup("np-b", "client", true), tcpDNS("np-b", "client", true), apiserver("np-b", "client", true))
	})

	denyIngress := `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: np-a}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`
	t.Run("default deny ingress", func(t *testing.T) {
		start := time.Now()
		applyNow(denyIngress)
		// The server's chain is in the kernel soon after the API has the
		// policy.
		stored := time.Now()
		for !strings.Contains(table(), "jump pod-ingress/np-a/server") {
			if time.Since(stored) > 3*time.Second {
				t.Fatalf("no chain for np-a/server 3 s after the policy was stored:\n%s", table())
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("policy stored → rules in nftables: %s", time.Since(stored).Round(time.Millisecond))
		expect(t, httpConn("np-a", "client", server, 8080, false), httpConn("np-b", "client", server, 8080, false),
			httpConn("np-a", "client", svc, 80, false),
			// a pod still reaches itself through its Service (hairpin)
			httpConn("np-a", "server", svc, 80, true))
		// The node itself (kubelet probes, here the test on the host)
		// still reaches the pod, which stays Ready and is not restarted.
		if _, err := httpGet(fmt.Sprintf("http://%s:8080/", server)); err != nil {
			t.Errorf("host → pod under default deny: %v", err)
		}
		time.Sleep(time.Until(start.Add(5 * time.Second)))
		ready := s.MustKubectl("get", "pod", "-n", "np-a", "server", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.containerStatuses[0].restartCount}`)
		if ready != "True 0" {
			t.Errorf("server pod under default deny: Ready and restarts %q, want \"True 0\"", ready)
		}
	})

	allow := func(name, spec string) string {
		return `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ` + name + `, namespace: np-a}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
` + spec
	}
	t.Run("allow by podSelector, ClusterIP", func(t *testing.T) {
		apply(allow("allow", `  - from: [{podSelector: {matchLabels: {role: client}}}]`))
		expect(t, httpConn("np-a", "client", server, 8080, true), httpConn("np-a", "client", svc, 80, true),
			httpConn("np-a", "other", server, 8080, false), httpConn("np-a", "other", svc, 80, false),
			httpConn("np-b", "client", server, 8080, false))
	})
	t.Run("allow by namespaceSelector", func(t *testing.T) {
		apply(allow("allow", `  - from: [{namespaceSelector: {matchLabels: {team: b}}}]`))
		expect(t, httpConn("np-b", "client", server, 8080, true), httpConn("np-b", "other", server, 8080, true),
			httpConn("np-c", "client", server, 8080, false), httpConn("np-a", "client", server, 8080, false))
	})
	t.Run("allow by namespaceSelector and podSelector", func(t *testing.T) {
		apply(allow("allow", `  - from:
    - namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [b, c]}]}
      podSelector: {matchLabels: {role: client}}`))
		expect(t, httpConn("np-b", "client", server, 8080, true), httpConn("np-c", "client", server, 8080, true),
			httpConn("np-b", "other", server, 8080, false), httpConn("np-a", "client", server, 8080, false))
	})
	t.Run("named port", func(t *testing.T) {
		apply(allow("allow", `  - ports: [{port: http}]`))
		expect(t, httpConn("np-a", "other", server, 8080, true), httpConn("np-c", "client", svc, 80, true),
			httpConn("np-a", "other", server, 9090, false))
	})
	t.Run("ipBlock with except", func(t *testing.T) {
		apply(allow("allow", `  - from: [{ipBlock: {cidr: 10.42.0.0/16, except: [`+other+`/32]}}]`))
		expect(t, httpConn("np-a", "client", server, 9090, true), httpConn("np-b", "other", server, 8080, true),
			httpConn("np-a", "other", server, 8080, false))
	})
	t.Run("policies deleted", func(t *testing.T) {
		s.MustKubectl("delete", "networkpolicy", "-n", "np-a", "--all")
		expect(t, httpConn("np-a", "other", server, 8080, true), httpConn("np-c", "client", svc, 80, true))
	})

	egress := func(ports string) string {
		return `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns-only, namespace: np-b}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: ` + ports + "\n"
	}
	t.Run("egress deny except DNS", func(t *testing.T) {
		apply(egress(`[{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]`))
		expect(t, nslookup("np-b", "client", true), tcpDNS("np-b", "client", true),
			httpConn("np-b", "client", server, 8080, false), httpConn("np-b", "client", svc, 80, false),
			apiserver("np-b", "client", false),
			httpConn("np-b", "other", server, 8080, true), apiserver("np-b", "other", true))
	})
	t.Run("UDP and TCP apart", func(t *testing.T) {
		apply(egress(`[{protocol: UDP, port: 53}]`))
		expect(t, nslookup("np-b", "client", true), tcpDNS("np-b", "client", false))
		apply(egress(`[{port: 53}]`)) // no protocol: TCP
		expect(t, nslookup("np-b", "client", false), tcpDNS("np-b", "client", true))
		s.MustKubectl("delete", "networkpolicy", "-n", "np-b", "--all")
		expect(t, nslookup("np-b", "client", true), httpConn("np-b", "client", server, 8080, true))
	})

	t.Run("disabled: no rules left", func(t *testing.T) {
		apply(denyIngress)
		expect(t, httpConn("np-a", "client", server, 8080, false))
		if err, _ := s.Stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		// The rules are the kernel's: they outlive the process.
		if out := table(); !strings.Contains(out, "jump pod-ingress/np-a/server") {
			t.Errorf("rules gone after a stop:\n%s", out)
		}
		s.args = append(s.args, "--disable-network-policy")
		s.Start()
		Eventually(t, time.Minute, "table removed", func() error {
			if out, err := exec.Command("nft", "list", "table", "inet", "distro-netpol").CombinedOutput(); err == nil {
				return fmt.Errorf("nft list table inet distro-netpol still works:\n%.300s", out)
			}
			return nil
		})
		// The line follows the removal by a moment.
		Eventually(t, 10*time.Second, "a log line about the removed table", func() error {
			if !strings.Contains(s.Log(), "network policy: disabled; removed nftables table") {
				return fmt.Errorf("no such line yet")
			}
			return nil
		})
		Eventually(t, 2*time.Minute, "node Ready after the restart", func() error {
			if !strings.Contains(s.Log(), " Ready in ") {
				return fmt.Errorf("no node Ready line yet")
			}
			return nil
		})
		// The policy is still in the API, but nothing enforces it.
		expect(t, httpConn("np-a", "client", server, 8080, true))
	})
}
