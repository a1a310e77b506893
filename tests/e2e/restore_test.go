package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHARestore: a cluster of two servers is lost entirely (every server
// container removed with its data); a snapshot taken before is restored on
// a fresh server with the cluster's token, which starts normally with
// every object back under its UID, and two new servers join it.
func TestHARestore(t *testing.T) {
	needNodeImage(t)
	c := newCluster(t, "distro-restore")
	net := c.net
	s1, s2 := c.node("s1"), c.node("s2")                   // the cluster that is lost
	r1, r2, r3 := c.node("r1"), c.node("r2"), c.node("r3") // the cluster restored from its snapshot
	vol := net + "-r1-data"
	c.volumes = append(c.volumes, vol)
	backup := t.TempDir()
	nodesReady := func(on string, want int) func() error {
		return func() error {
			out, err := kubectlOn(on, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
			if err != nil || strings.Count(out, "=True") < want {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}
	}

	// The original cluster, objects in it, a snapshot copied off it.
	const secret = "restore-test-secret"
	startNode(t, net, s1, "server", "--cluster-init", "--token", secret)
	eventually(t, 2*time.Minute, s1+"'s API", func() error {
		_, err := kubectlOn(s1, "get", "--raw", "/readyz")
		return err
	})
	startNode(t, net, s2, "server", "--server", "https://"+s1+":6443", "--token", secret)
	eventually(t, 3*time.Minute, "2 servers Ready", nodesReady(s1, 2))
	for _, args := range [][]string{
		{"create", "namespace", "kept"},
		{"-n", "kept", "create", "configmap", "settings", "--from-literal=mode=restored"},
		{"-n", "kept", "create", "secret", "generic", "credentials", "--from-literal=password=s3cret"},
		{"-n", "kept", "create", "serviceaccount", "robot"},
	} {
		if out, err := kubectlOn(s1, args...); err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	objects := []string{"namespace/kept", "configmap/settings", "secret/credentials", "serviceaccount/robot"}
	uids := map[string]string{}
	for _, o := range objects {
		uid, err := kubectlOn(s1, "-n", "kept", "get", o, "-o", "jsonpath={.metadata.uid}")
		if err != nil || uid == "" {
			t.Fatalf("uid of %s: %v %s", o, err, uid)
		}
		uids[o] = uid
	}
	// The sealed CAs are stored in etcd shortly after a server's first start.
	eventually(t, time.Minute, "bootstrap data stored", func() error {
		if out, _ := docker("logs", s1); !strings.Contains(out, "stored the cluster's CAs and service-account key in etcd") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	out := must(t, "exec", s2, "distro", "etcd-snapshot", "save", "--name", "backup")
	m := regexp.MustCompile(`saved (\S+) \(`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("etcd-snapshot save: %s", out)
	}
	must(t, "cp", s2+":"+m[1], backup+"/snapshot")
	token := must(t, "exec", s1, "cat", "/var/lib/distro/server/token")
	if out, err := kubectlOn(s1, "-n", "kept", "create", "configmap", "after-snapshot"); err != nil {
		t.Fatalf("a ConfigMap after the snapshot: %v\n%s", err, out)
	}

	// Every server is lost, with its data.
	must(t, "rm", "-f", "-v", s1, s2)

	// A fresh server restores the snapshot with the cluster's token (the
	// reset and the normal start share its data volume), then starts as
	// the first server of the cluster.
	out, err := runNode(net, r1, []string{"-v", vol + ":/var/lib/distro", "-v", backup + ":/backup:ro"},
		"server", "--cluster-reset", "--cluster-reset-restore-path", "/backup/snapshot", "--token", token)
	if err != nil || !strings.Contains(out, "cluster reset done") {
		t.Fatalf("restore on a fresh server: %v\n%s", err, out)
	}
	must(t, "rm", "-v", r1)
	if out, err := runNode(net, r1, []string{"-d", "-v", vol + ":/var/lib/distro"}, "server", "--cluster-init", "--token", token); err != nil {
		t.Fatalf("start %s: %v\n%s", r1, err, out)
	}
	eventually(t, 3*time.Minute, r1+"'s API", func() error {
		_, err := kubectlOn(r1, "get", "--raw", "/readyz")
		return err
	})
	for _, o := range objects {
		eventually(t, time.Minute, o+" back with its UID", func() error {
			uid, err := kubectlOn(r1, "-n", "kept", "get", o, "-o", "jsonpath={.metadata.uid}")
			if err != nil || uid != uids[o] {
				return fmt.Errorf("uid %q (was %q): %v", uid, uids[o], err)
			}
			return nil
		})
	}
	if out, _ := kubectlOn(r1, "-n", "kept", "get", "secret", "credentials", "-o", "jsonpath={.data.password}"); out != "czNjcmV0" {
		t.Errorf("restored Secret's data: %q", out)
	}
	if out, err := kubectlOn(r1, "-n", "kept", "get", "configmap", "after-snapshot"); err == nil {
		t.Errorf("a ConfigMap made after the snapshot is back: %s", out)
	}

	// Two new servers join the restored one and become voters.
	url := "https://" + r1 + ":6443"
	startNode(t, net, r2, "server", "--server", url, "--token", token)
	startNode(t, net, r3, "server", "--server", url, "--token", token)
	eventually(t, 5*time.Minute, "r1, r2, r3 Ready", func() error {
		out, err := kubectlOn(r1, "get", "nodes", r1, r2, r3, "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil || strings.Count(out, "=True") != 3 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	for _, n := range []string{r2, r3} {
		eventually(t, time.Minute, n+" promoted to voter", func() error {
			for _, by := range []string{r1, r2, r3} {
				if out, _ := docker("logs", by); strings.Contains(out, "etcd: promoted learner "+n+" ") {
					return nil
				}
			}
			return fmt.Errorf("no server logged the promotion of %s", n)
		})
		if uid, _ := kubectlOn(n, "-n", "kept", "get", "secret", "credentials", "-o", "jsonpath={.metadata.uid}"); uid != uids["secret/credentials"] {
			t.Errorf("%s reads the restored Secret with uid %q", n, uid)
		}
	}
}
