package netpol

import (
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

// The real nft accepts what Build writes: the transaction runs in a
// throwaway network namespace (root, nft and unshare needed).
func TestRealNftAcceptsTable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"nft", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	rng := tcpPort(8000)
	rng.EndPort = new(int32)
	*rng.EndPort = 8100
	st := with(cluster(),
		mkPolicy("default", "deny", nil, both, nil, nil),
		mkPolicy("default", strings.Repeat("long.name-", 25), map[string]string{"app": "web"}, both,
			[]networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "client"}),
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16", Except: []string{"10.42.0.12/32"}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: "fd00::/8", Except: []string{"fd00:42::/64"}}}},
					Ports: []networkingv1.NetworkPolicyPort{rng, tcpPort(8101), protoPort(corev1.ProtocolUDP, intstr.FromString("dns")),
						protoPort(corev1.ProtocolSCTP, intstr.FromInt32(9)), {Protocol: func() *corev1.Protocol { p := corev1.ProtocolUDP; return &p }()}}},
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}, PodSelector: &metav1.LabelSelector{}}}},
				{},
			},
			[]networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "web"})},
					Ports: []networkingv1.NetworkPolicyPort{protoPort(corev1.ProtocolTCP, intstr.FromString("http")), tcpPort(443)}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}}},
			}))
	fake := knftables.NewFake(knftables.InetFamily, Table)
	tx := fake.NewTransaction()
	Build(tx, st)
	script := tx.String()
	cmd := exec.Command("unshare", "-n", "sh", "-c", "nft -f - && nft list table inet "+Table)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft refused the table: %v\n%s\nscript:\n%s", err, out, script)
	}
	for _, want := range []string{"hook forward", "hook input", "pod-ingress/default/web", "pod-egress/default/client", "ip6 saddr @ingress/", "sctp dport 9", "jump pod-ingress/default/web"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("listed table lacks %q:\n%s", want, out)
		}
	}
}
