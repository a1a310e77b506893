package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"distro/pkg/pki"
)

// TestCertRenewal runs a server and an agent with test-only short
// certificate lifetimes (a third of the run, renewed when a sixth is left)
// for E2E_CERT_RENEWAL_MINUTES (default 30) without any restart: every
// 15 s kubectl, the kubelets (exec into a pod on the agent), kube-proxy and
// flannel (a Service across nodes) must work; at the end every component
// serves, or authenticates with, a certificate newer than the one it
// started with (serving certificates over TLS: apiserver, both kubelets,
// etcd; client certificates by their fingerprint in the audit log), and no
// pod restarted.
func TestCertRenewal(t *testing.T) {
	needNodeImage(t)
	minutes := 30
	if v := os.Getenv("E2E_CERT_RENEWAL_MINUTES"); v != "" {
		var err error
		if minutes, err = strconv.Atoi(v); err != nil || minutes < 3 {
			t.Fatalf("E2E_CERT_RENEWAL_MINUTES=%q: want a whole number of minutes, at least 3", v)
		}
	}
	run := time.Duration(minutes) * time.Minute
	lifetime, renew := run/3, run/6
	env := []string{"-d", "-e", pki.EnvTestLifetime + "=" + lifetime.String(), "-e", pki.EnvTestRenewBefore + "=" + renew.String()}
	t.Logf("%s run, certificates valid %s, renewed %s before expiry", run, lifetime, renew)

	c := newCluster(t, "distro-certs")
	s, a := c.node("s1"), c.node("a1")
	kubectl := func(args ...string) (string, error) { return kubectlOn(s, args...) }
	if out, err := runNode(c.net, s, env, "server"); err != nil {
		t.Fatalf("start server: %v\n%s", err, out)
	}
	token := serverToken(t, s)
	if out, err := runNode(c.net, a, env, "agent", "--server", "https://"+s+":6443", "--token", token); err != nil {
		t.Fatalf("start agent: %v\n%s", err, out)
	}
	eventually(t, 3*time.Minute, "2 nodes Ready", func() error {
		out, err := kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil || strings.Count(out, "True") != 2 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	must(t, "cp", os.Getenv("E2E_TEST_IMAGE_TAR"), a+":/tmp/test.tar")
	must(t, "exec", a, "distro", "ctr", "images", "import", "/tmp/test.tar")
	must(t, "cp", os.Getenv("E2E_TEST_IMAGE_TAR"), s+":/tmp/test.tar")
	must(t, "exec", s, "distro", "ctr", "images", "import", "/tmp/test.tar")
	for _, n := range []string{s, a} {
		applyOn(t, s, fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-%s","labels":{"app":"web-%s"}},
"spec":{"nodeName":%q,"containers":[{"name":"c","image":"distro.test/busybox:1","imagePullPolicy":"Never",
"command":["/bin/sh","-c","echo hello-%s > /www/index.html; exec httpd -f -p 8080 -h /www"]}]}}`, n, n, n, n))
	}
	if out, err := kubectl("expose", "pod", "web-"+s, "--name", "web-server", "--port", "80", "--target-port", "8080"); err != nil {
		t.Fatalf("expose: %v\n%s", err, out)
	}
	if out, err := kubectl("wait", "--for=condition=Ready", "pod/web-"+s, "pod/web-"+a, "--timeout=120s"); err != nil {
		t.Fatalf("pods: %v\n%s", err, out)
	}

	// What each node's endpoints serve, asked inside the node (etcd
	// listens on loopback only): distro certificate check --served.
	served := func() map[string]string {
		out := map[string]string{}
		for _, n := range []string{s, a} {
			table, err := docker("exec", n, "distro", "certificate", "check", "--served")
			if err != nil {
				t.Errorf("certificate check --served on %s: %v\n%s", n, err, table)
			}
			for _, line := range strings.Split(table, "\n")[1:] {
				// COMPONENT (may hold a space) ENDPOINT SERIAL FILE FILE-SERIAL CURRENT
				f := strings.Fields(line)
				if len(f) < 6 || !strings.HasPrefix(f[len(f)-5], "127.0.0.1:") {
					continue
				}
				out[n+" "+strings.Join(f[:len(f)-5], " ")] = f[len(f)-4]
			}
		}
		if len(out) < 7 {
			t.Errorf("served certificates: %v, want the server's 6 endpoints and the agent's 2", out)
		}
		return out
	}
	startServed := served()
	startRestarts := restarts(t, s)
	cip, _ := kubectl("get", "svc", "web-server", "-o", "jsonpath={.spec.clusterIP}")

	// The traffic checks, each retried for 10 s before it counts as failed.
	checks := map[string]func() error{
		"kubectl get nodes (admin, both nodes Ready)": func() error {
			out, err := kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}`)
			if err != nil || strings.Count(out, "True") != 2 {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		},
		"exec in the agent's pod → Service on the server (apiserver→kubelet, kube-proxy, flannel)": func() error {
			out, err := kubectl("exec", "web-"+a, "--", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 `+cip+" 80")
			if err != nil || !strings.Contains(out, "hello-"+s) {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		},
		"kubectl logs (apiserver→kubelet on the agent)": func() error {
			_, err := kubectl("logs", "web-"+a)
			return err
		},
	}
	end := time.Now().Add(run)
	failures := 0
	for n := 0; time.Now().Before(end); n++ {
		for what, check := range checks {
			var err error
			for try := 0; try < 5; try++ {
				if err = check(); err == nil {
					break
				}
				time.Sleep(2 * time.Second)
			}
			if err != nil {
				failures++
				t.Errorf("%s: %s failed: %v", time.Now().Format(time.TimeOnly), what, err)
			}
		}
		if n%8 == 0 {
			t.Logf("%s: checks pass; %s left", time.Now().Format(time.TimeOnly), time.Until(end).Round(time.Second))
		}
		if failures > 5 {
			t.Fatal("too many failures")
		}
		time.Sleep(15 * time.Second)
	}

	endServed := served()
	for name, serial := range startServed {
		if endServed[name] == serial {
			t.Errorf("%s still serves the certificate it started with (serial %s)", name, serial)
		} else {
			t.Logf("%s: serial %s → %s", name, serial, endServed[name])
		}
	}
	if got := restarts(t, s); got != startRestarts {
		t.Errorf("containers restarted: %s, then %s", startRestarts, got)
	}
	// Client certificates: the fingerprint each user authenticated with
	// first, and last.
	audit := must(t, "exec", s, "cat", "/var/lib/distro/server/logs/audit.log")
	first, last := map[string]string{}, map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(audit))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			User struct {
				Username string              `json:"username"`
				Extra    map[string][]string `json:"extra"`
			} `json:"user"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		ids := ev.User.Extra["authentication.kubernetes.io/credential-id"]
		if len(ids) == 0 || !strings.HasPrefix(ids[0], "X509SHA256=") {
			continue
		}
		if _, ok := first[ev.User.Username]; !ok {
			first[ev.User.Username] = ids[0]
		}
		last[ev.User.Username] = ids[0]
	}
	for _, user := range []string{"system:admin", "system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy",
		pki.FlannelUser, "system:node:" + s, "system:node:" + a} {
		switch {
		case first[user] == "":
			t.Errorf("%s: no request in the audit log", user)
		case first[user] == last[user]:
			t.Errorf("%s still authenticates with its first certificate (%s)", user, first[user])
		default:
			t.Logf("%s: %s… → %s…", user, first[user][:24], last[user][:24])
		}
	}
}

// restarts lists every pod's containers' restart counts.
func restarts(t *testing.T, s string) string {
	t.Helper()
	out, err := kubectlOn(s, "get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[*].restartCount} {end}`)
	if err != nil {
		t.Fatalf("get pods: %v\n%s", err, out)
	}
	return out
}
