package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHA: three servers on embedded etcd and an agent. The first starts
// the cluster (--cluster-init); two more join it at the same instant
// through it (--server) and both end as etcd voters with Ready nodes. A
// joiner with a wrong token or another --cluster-cidr exits with one line
// and keeps nothing. With the first server killed, the two others still
// serve the API (quorum 2 of 3); restarted, it rejoins as the same member
// and catches up.
func TestHA(t *testing.T) {
	needNodeImage(t)
	c := newCluster(t, "distro-ha")
	net := c.net
	s1, s2, s3, a1 := c.node("s1"), c.node("s2"), c.node("s3"), c.node("a1")
	bad1, bad2 := c.node("bad1"), c.node("bad2")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := kubectlOn(s2, "get", "nodes", "-o", "wide")
			t.Logf("--- nodes (from %s)\n%s", s2, out)
		}
	})
	startNode(t, net, s1, "server", "--cluster-init")
	token := serverToken(t, s1)
	url := "https://" + s1 + ":6443"
	eventually(t, 2*time.Minute, "first server's API", func() error {
		_, err := kubectlOn(s1, "get", "--raw", "/readyz")
		return err
	})

	// Refused joiners: one line, a non-zero exit, no data dir, no member.
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		bad1: {[]string{"--token", token[:strings.LastIndex(token, ":")+1] + "wrong"}, "distro: --server " + url + ": the server rejected the token"},
		bad2: {[]string{"--token", token, "--cluster-cidr", "10.99.0.0/16"}, `critical configuration mismatch: --cluster-cidr is "10.42.0.0/16" on this cluster and "10.99.0.0/16" on the joining server`},
	} {
		out, err := runNode(net, name, nil, append([]string{"server", "--server", url}, c.args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if last := lines[len(lines)-1]; err == nil || !strings.Contains(last, c.want) {
			t.Errorf("%s: exit %v, last line %q, want it to contain %q", name, err, last, c.want)
		}
		if _, err := docker("cp", name+":/var/lib/distro/server", "-"); err == nil {
			t.Errorf("%s left /var/lib/distro/server behind", name)
		}
	}

	// Two servers join at the same instant; the agent joins too.
	var wg sync.WaitGroup
	for _, n := range []string{s2, s3} {
		wg.Add(1)
		go func(n string) {
			defer wg.Done()
			runNode(net, n, []string{"-d"}, "server", "--server", url, "--token", token)
		}(n)
	}
	wg.Wait()
	startNode(t, net, a1, "agent", "--server", url, "--token", token)
	eventually(t, 5*time.Minute, "4 nodes Ready", func() error {
		out, err := kubectlOn(s1, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil || strings.Count(out, "=True") != 4 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// Seconds from a joiner's start to a voting member with a Ready node
	// (the node turns Ready only after its apiserver, which waits for the
	// promotion to voter). The API keeps whole seconds.
	for _, n := range []string{s2, s3} {
		started, _ := docker("inspect", "-f", "{{.State.StartedAt}}", n)
		ready, _ := kubectlOn(s1, "get", "node", n, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].lastTransitionTime}`)
		t0, err0 := time.Parse(time.RFC3339Nano, started)
		t1, err1 := time.Parse(time.RFC3339, ready)
		if err0 == nil && err1 == nil {
			t.Logf("join: %s from start to a voting member with a Ready node in %.0fs", n, t1.Sub(t0).Seconds())
		}
	}
	// Both joiners were learners, promoted by the raft leader.
	for _, n := range []string{s2, s3} {
		eventually(t, 2*time.Minute, n+" promoted to voter", func() error {
			for _, by := range []string{s1, s2, s3} {
				if out, _ := docker("logs", by); strings.Contains(out, "etcd: promoted learner "+n+" ") {
					return nil
				}
			}
			return fmt.Errorf("no server logged the promotion of %s", n)
		})
	}
	if out, _ := kubectlOn(s1, "get", "nodes", "-l", "node-role.kubernetes.io/control-plane=true", "-o", "name"); strings.Count(out, "node/") != 3 {
		t.Errorf("control-plane nodes: %s", out)
	}
	// The scheduler and controller-manager run once, on one server.
	holders := map[string]bool{}
	for _, lease := range []string{"kube-scheduler", "kube-controller-manager", "distro-controllers"} {
		h, err := kubectlOn(s1, "get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}")
		if err != nil || h == "" {
			t.Errorf("lease %s: %v %q", lease, err, h)
		}
		holders[h] = true
	}
	t.Logf("lease holders: %v", holders)

	// The agent's load balancer knows every server.
	eventually(t, time.Minute, a1+"'s load balancer lists the 3 servers", func() error {
		out, err := docker("exec", a1, "cat", "/var/lib/distro/agent/etc/servers.json")
		if err != nil || strings.Count(out, ":6443") != 3 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// A writer on the agent creates a ConfigMap every 100 ms through the
	// agent's load balancer (admin credentials, server 127.0.0.1:6444) and
	// records each acknowledged write with its time. Each request gives up
	// after 2 s: a write that etcd had forwarded to the dead leader waits
	// until its context ends (etcd fails pending proposals only then), so
	// the longest gap a client sees is at least its own timeout.
	admin := must(t, "exec", s1, "cat", "/etc/distro/distro.yaml")
	admin = regexp.MustCompile(`server: https://[^\s]+`).ReplaceAllString(admin, "server: https://127.0.0.1:6444")
	cmd := exec.Command("docker", "exec", "-i", a1, "sh", "-c", "cat > /tmp/admin.yaml")
	cmd.Stdin = strings.NewReader(admin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("admin kubeconfig on %s: %v\n%s", a1, err, out)
	}
	writer := `end=$(($(date +%s) + 40)); i=0
while [ $(date +%s) -lt $end ]; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  if out=$(distro kubectl --kubeconfig /tmp/admin.yaml --request-timeout=2s create configmap w-$i 2>&1); then echo "$i $(cut -d' ' -f1 /proc/uptime)" >> /tmp/acks
  else echo "write $i started at $t0, failed at $(cut -d' ' -f1 /proc/uptime): $(echo "$out" | tail -n 1)" >> /tmp/fails; fi
  i=$((i+1)); sleep 0.1
done; echo end >> /tmp/acks`
	must(t, "exec", "-d", a1, "sh", "-c", writer)
	time.Sleep(10 * time.Second)

	// The first server dies: the other two keep the API (and etcd quorum).
	must(t, "kill", s1)
	killed := time.Now()
	eventually(t, 60*time.Second, "a write through "+s2+" with "+s1+" dead", func() error {
		_, err := kubectlOn(s2, "create", "configmap", "written-while-s1-dead", "--from-literal=k=v")
		return err
	})
	t.Logf("API writable through %s %.1fs after %s was killed", s2, time.Since(killed).Seconds(), s1)
	if _, err := kubectlOn(s3, "get", "configmap", "written-while-s1-dead"); err != nil {
		t.Errorf("%s does not see the write: %v", s3, err)
	}
	// The writer's longest gap, and every acknowledged write still there.
	var acks string
	eventually(t, 90*time.Second, "the writer on "+a1+" ends", func() error {
		acks, _ = docker("exec", a1, "cat", "/tmp/acks")
		if !strings.HasSuffix(acks, "end") {
			return fmt.Errorf("still writing")
		}
		return nil
	})
	var last, gap, gapEnd float64 // seconds of uptime
	acked := map[string]bool{}
	for _, line := range strings.Split(acks, "\n") {
		var i int
		var at float64
		if n, _ := fmt.Sscan(line, &i, &at); n != 2 {
			continue
		}
		acked[fmt.Sprintf("configmap/w-%d", i)] = true
		if last != 0 && at-last > gap {
			gap, gapEnd = at-last, at
		}
		last = at
	}
	present := map[string]bool{}
	out, err := kubectlOn(s2, "get", "configmaps", "-o", "name")
	if err != nil {
		t.Fatalf("list configmaps: %v\n%s", err, out)
	}
	for _, n := range strings.Fields(out) {
		present[n] = true
	}
	missing := 0
	for n := range acked {
		if !present[n] {
			missing++
		}
	}
	t.Logf("writer through %s's load balancer, %s killed mid-run: %d writes acknowledged, longest gap %.1fs, %d acknowledged writes missing", a1, s1, len(acked), gap, missing)
	if lbLog, _ := docker("logs", a1); true {
		for _, line := range strings.Split(lbLog, "\n") {
			if strings.Contains(line, "load balancer:") {
				t.Logf("%s: %s", a1, line)
			}
		}
	}
	t.Logf("%s killed at %s", s1, killed.UTC().Format("15:04:05.000"))
	if fails, _ := docker("exec", a1, "cat", "/tmp/fails"); fails != "" {
		t.Logf("failed writes (times in %s's uptime; the longest gap ended at %.1f):\n%s", a1, gapEnd, fails)
	}
	if missing != 0 || len(acked) < 20 {
		t.Errorf("%d acknowledged writes missing (of %d)", missing, len(acked))
	}

	// The agent fails over to another server: a pod bound to it runs.
	eventually(t, 60*time.Second, a1+"'s load balancer fails over", func() error {
		if out, _ := docker("logs", a1); !strings.Contains(out, "load balancer: switched from") {
			return fmt.Errorf("no failover logged yet")
		}
		return nil
	})
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"after-failover"},"spec":{"nodeName":%q,
"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10.2","imagePullPolicy":"Never"}]}}`, a1)
	applyOn(t, s2, pod)
	if out, err := kubectlOn(s2, "wait", "--for=condition=Ready", "pod/after-failover", "--timeout=90s"); err != nil {
		t.Errorf("a pod on %s after the failover: %v\n%s", a1, err, out)
	}
	if out, _ := kubectlOn(s2, "get", "node", a1, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); out != "True" {
		t.Errorf("%s Ready = %q after the failover", a1, out)
	}

	// The Leases move off the dead server.
	eventually(t, 90*time.Second, "kube-controller-manager lease off "+s1, func() error {
		h, err := kubectlOn(s2, "get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}")
		if err != nil || h == s1 || h == "" {
			return fmt.Errorf("held by %q (%v)", h, err)
		}
		return nil
	})

	// Restarted, it rejoins as the same member and catches up.
	must(t, "start", s1)
	eventually(t, 3*time.Minute, s1+" serves the write made while it was dead", func() error {
		_, err := kubectlOn(s1, "get", "configmap", "written-while-s1-dead")
		return err
	})
	eventually(t, 3*time.Minute, s1+" Ready again", func() error {
		out, err := kubectlOn(s2, "get", "node", s1, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// Deleting a server's Node removes its etcd member; the server stops
	// and says how to rejoin; the Node does not stick in Terminating.
	if out, _ := kubectlOn(s2, "get", "node", s3, "-o", "jsonpath={.metadata.finalizers}"); !strings.Contains(out, "etcd.distro.io/member") {
		t.Errorf("%s's Node has no etcd member finalizer: %s", s3, out)
	}
	if out, err := kubectlOn(s2, "delete", "node", s3, "--timeout=90s"); err != nil {
		t.Fatalf("delete node %s: %v\n%s", s3, err, out)
	}
	eventually(t, time.Minute, s3+"'s member removed", func() error {
		// By the holder of the distro-controllers Lease, which may be s3.
		for _, by := range []string{s1, s2, s3} {
			if out, _ := docker("logs", by); strings.Contains(out, "etcd: removed member "+s3+" ") {
				return nil
			}
		}
		return fmt.Errorf("no server logged the removal")
	})
	eventually(t, time.Minute, s3+" stops, saying how to rejoin", func() error {
		if st, _ := docker("inspect", "-f", "{{.State.Running}}", s3); st != "false" {
			return fmt.Errorf("still running")
		}
		if out, _ := docker("logs", "--tail", "3", s3); !strings.Contains(out, "etcd member was removed from the cluster") {
			return fmt.Errorf("last lines: %s", out)
		}
		return nil
	})
	if out, err := kubectlOn(s2, "create", "configmap", "after-removal"); err != nil {
		t.Errorf("the API with 2 servers left: %v\n%s", err, out)
	}
	// Restarted with its old data, it refuses at once.
	docker("start", s3)
	eventually(t, time.Minute, s3+" refuses to start with its old data", func() error {
		if st, _ := docker("inspect", "-f", "{{.State.Running}}", s3); st != "false" {
			return fmt.Errorf("still running")
		}
		out, _ := docker("logs", "--tail", "1", s3)
		if !strings.Contains(out, "delete /var/lib/distro/server/db and start it with --server") {
			return fmt.Errorf("last line: %s", out)
		}
		return nil
	})
}

// TestHASimultaneousStart: the first server, two more servers and an agent
// started at the same instant (a preset token, as an automated install
// does) all join: the joiners retry, saying so, until the first server
// admits them. E2E_SIMULTANEOUS_RUNS repeats it (default 1).
func TestHASimultaneousStart(t *testing.T) {
	needNodeImage(t)
	runs := 1
	fmt.Sscan(envOr("E2E_SIMULTANEOUS_RUNS", "1"), &runs)
	guardDockerUser(t)
	for run := 1; run <= runs; run++ {
		net := fmt.Sprintf("distro-sim-%d-%d", os.Getpid(), run)
		s1, s2, s3, a1 := net+"-s1", net+"-s2", net+"-s3", net+"-a1"
		all := []string{s1, s2, s3, a1}
		must(t, "network", "create", net)
		cleanup := func() {
			if t.Failed() {
				for _, n := range all {
					out, _ := docker("logs", "--tail", "30", n)
					t.Logf("--- %s\n%s", n, out)
				}
			}
			docker(append([]string{"rm", "-f", "-v"}, all...)...)
			docker("network", "rm", net)
		}
		url := "https://" + s1 + ":6443"
		const secret = "simultaneous-start-secret"
		args := map[string][]string{
			s1: {"server", "--cluster-init", "--token", secret},
			s2: {"server", "--server", url, "--token", secret},
			s3: {"server", "--server", url, "--token", secret},
			a1: {"agent", "--server", url, "--token", secret},
		}
		start := time.Now()
		var wg sync.WaitGroup
		for _, n := range all {
			wg.Add(1)
			go func(n string) {
				defer wg.Done()
				runNode(net, n, []string{"-d"}, args[n]...)
			}(n)
		}
		wg.Wait()
		ok := true
		deadline := time.Now().Add(5 * time.Minute)
		for {
			out, err := kubectlOn(s1, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
			if err == nil && strings.Count(out, "=True") == 4 {
				break
			}
			for _, n := range all {
				if st, _ := docker("inspect", "-f", "{{.State.Running}}", n); st == "false" {
					t.Errorf("run %d: %s exited", run, n)
					ok = false
				}
			}
			if !ok || time.Now().After(deadline) {
				t.Errorf("run %d: not all 4 nodes Ready: %s", run, out)
				ok = false
				break
			}
			time.Sleep(2 * time.Second)
		}
		if ok {
			t.Logf("run %d: 3 servers and an agent started at once, all Ready in %.0fs", run, time.Since(start).Seconds())
		}
		cleanup()
		if !ok {
			return
		}
	}
}
