package netpol

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/knftables"
)

// benchState is a cluster of 500 pods in 10 namespaces (half of them on
// this node) under 100 policies: per namespace a default deny, and
// policies admitting an app from its own namespace and from labelled
// namespaces on a named and a numbered port, with egress to an ipBlock.
func benchState() State {
	st := State{NodeName: "n1"}
	for n := 0; n < 10; n++ {
		ns := fmt.Sprintf("team-%d", n)
		st.Namespaces = append(st.Namespaces, mkNS(ns, map[string]string{"tier": fmt.Sprint(n % 3)}))
		for i := 0; i < 50; i++ {
			node := "n1"
			if i%2 == 1 {
				node = "n2"
			}
			ip := fmt.Sprintf("10.42.%d.%d", n, i+2)
			st.Pods = append(st.Pods, mkPod(ns, fmt.Sprintf("p-%d", i), node, []string{ip},
				map[string]string{"app": fmt.Sprintf("app-%d", i%9), "role": []string{"web", "db", "cache"}[i%3]},
				corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}))
		}
		st.Policies = append(st.Policies, mkPolicy(ns, "default-deny", nil, both, nil, nil))
		for j := 0; j < 9; j++ {
			app := fmt.Sprintf("app-%d", j)
			st.Policies = append(st.Policies, mkPolicy(ns, "allow-"+app, map[string]string{"app": app}, both,
				[]networkingv1.NetworkPolicyIngressRule{
					{From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "web"})}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(8080)}},
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "1"}}}},
						Ports: []networkingv1.NetworkPolicyPort{protoPort(corev1.ProtocolTCP, intstr.FromString("http"))}},
				},
				[]networkingv1.NetworkPolicyEgressRule{
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.42.9.0/24"}}}}},
				}))
		}
	}
	return st
}

// BenchmarkPolicyUpdate: one policy change as the controller applies it
// (the whole table computed and loaded in one nft transaction), with 100
// policies and 500 pods, into a real nft in a throwaway network namespace
// (root, nft and unshare needed; else only the computation is measured).
func BenchmarkPolicyUpdate(b *testing.B) {
	st := benchState()
	real := os.Geteuid() == 0
	for _, tool := range []string{"nft", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			real = false
		}
	}
	var stats Stats
	for i := 0; i < b.N; i++ {
		// The change: one more policy each round.
		st.Policies = append(st.Policies[:100], mkPolicy("team-0", fmt.Sprintf("extra-%d", i), map[string]string{"role": "db"}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "cache"})}}}, nil))
		fake := knftables.NewFake(knftables.InetFamily, Table)
		tx := fake.NewTransaction()
		stats = Build(tx, st)
		if !real {
			continue
		}
		cmd := exec.Command("unshare", "-n", "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(tx.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("nft: %v\n%s", err, out)
		}
	}
	b.ReportMetric(float64(stats.Rules), "rules")
	b.ReportMetric(float64(stats.SetsElements), "set-elements")
	if !real {
		b.Log("no root/nft/unshare: the computation only")
	}
}
