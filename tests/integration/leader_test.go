package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLostLeaseKeepsProcess: the scheduler and the controller-manager run
// while this server holds their Leases. When another holder takes the
// Leases, both stop (a new Deployment gets no pods) but the process goes on;
// once the intruder's Leases expire, the server takes them back and both
// run again.
func TestLostLeaseKeepsProcess(t *testing.T) {
	requireRoot(t)
	// A server of a cluster (--cluster-init) elects them; no node, so the
	// controller-manager's restarts cannot touch a kubelet's CSI state.
	s := NewServer(t, "--cluster-init", "--disable-agent", "--disable", "coredns,local-storage,metrics-server")
	s.Start()
	node := s.MustKubectl("get", "lease", "-n", "kube-system", "kube-scheduler", "-o", "jsonpath={.spec.holderIdentity}")
	if node == "" {
		t.Fatal("the kube-scheduler Lease has no holder")
	}
	for _, lease := range []string{"kube-controller-manager", "distro-controllers"} {
		if h := s.MustKubectl("get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}"); h != node {
			t.Errorf("lease %s held by %q, want %q", lease, h, node)
		}
	}

	// Another holder takes both Leases for 25 s.
	steal := func(lease string) {
		now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
		patch := fmt.Sprintf(`{"spec":{"holderIdentity":"intruder","leaseDurationSeconds":25,"acquireTime":%q,"renewTime":%q}}`, now, now)
		s.MustKubectl("patch", "lease", "-n", "kube-system", lease, "--type", "merge", "-p", patch)
	}
	steal("kube-scheduler")
	steal("kube-controller-manager")
	stolen := time.Now()
	Eventually(t, 30*time.Second, "both components stop", func() error {
		for _, c := range []string{"kube-scheduler", "kube-controller-manager"} {
			if !strings.Contains(s.Log(), c+": lost the lease kube-system/"+c) {
				return fmt.Errorf("%s: no lost-lease line yet", c)
			}
		}
		return nil
	})
	s.MustKubectl("create", "deployment", "after-loss", "--image=registry.k8s.io/pause:3.10.2")
	time.Sleep(3 * time.Second)
	if time.Since(stolen) < 20*time.Second {
		if rs := s.MustKubectl("get", "replicasets", "-l", "app=after-loss", "-o", "name"); rs != "" {
			t.Errorf("a ReplicaSet was made while another server held the controller-manager's Lease: %s", rs)
		}
	}
	select {
	case <-s.exited:
		t.Fatalf("the process ended when the Leases were lost: %v", s.exitErr)
	default:
	}

	// The intruder's Leases expire; this server takes them back.
	Eventually(t, 90*time.Second, "Leases taken back", func() error {
		for _, l := range []string{"kube-scheduler", "kube-controller-manager"} {
			h, _ := s.Kubectl("get", "lease", "-n", "kube-system", l, "-o", "jsonpath={.spec.holderIdentity}")
			if h != node {
				return fmt.Errorf("lease %s held by %q", l, h)
			}
		}
		return nil
	})
	// The controller-manager runs again: the Deployment gets its ReplicaSet
	// and pod (Pending: this server has no node).
	Eventually(t, 60*time.Second, "ReplicaSet and pod made after the Leases came back", func() error {
		out, _ := s.Kubectl("get", "pods", "-l", "app=after-loss", "-o", "name")
		if !strings.Contains(out, "pod/after-loss-") {
			return fmt.Errorf("no pod yet: %q", out)
		}
		return nil
	})
	if n := strings.Count(s.Log(), "kube-scheduler: this server holds the lease"); n < 2 {
		t.Errorf("the scheduler started %d times, want 2", n)
	}
	if strings.Contains(s.Log(), "panic") {
		t.Errorf("a panic in the log:\n%s", s.Tail(80))
	}
}
