package netpol

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/knftables"
)

const node = "n1"

// The cluster of the tests: pods on this node (n1) and on n2.
func cluster() State {
	web := mkPod("default", "web", node, []string{"10.42.0.10"}, map[string]string{"app": "web"},
		corev1.ContainerPort{Name: "http", ContainerPort: 8080},
		corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP})
	hostNet := mkPod("default", "hostnet", node, []string{"192.168.1.5"}, map[string]string{"app": "web", "role": "client"})
	hostNet.Spec.HostNetwork = true
	return State{
		NodeName: node,
		Namespaces: []*corev1.Namespace{
			mkNS("default", nil), mkNS("team-b", map[string]string{"team": "b"}), mkNS("team-c", map[string]string{"team": "c"}),
		},
		Pods: []*corev1.Pod{
			web,
			mkPod("default", "client", node, []string{"10.42.0.11", "fd00:42::11"}, map[string]string{"role": "client"}),
			mkPod("default", "other", node, []string{"10.42.0.12"}, nil),
			mkPod("default", "web6", node, []string{"10.42.0.20", "fd00:42::20"}, map[string]string{"app": "web"},
				corev1.ContainerPort{Name: "http", ContainerPort: 9090}),
			mkPod("default", "remote-web", "n2", []string{"10.42.1.10"}, map[string]string{"app": "web"},
				corev1.ContainerPort{Name: "http", ContainerPort: 8081}),
			mkPod("team-b", "client", "n2", []string{"10.42.1.11"}, map[string]string{"role": "client"}),
			mkPod("team-b", "other", "n2", []string{"10.42.1.13"}, nil),
			mkPod("team-b", "web", "n2", []string{"10.42.1.14"}, map[string]string{"app": "web"},
				corev1.ContainerPort{Name: "http", ContainerPort: 7777}),
			mkPod("team-c", "client", "n2", []string{"10.42.1.12"}, map[string]string{"role": "client"}),
			hostNet,
		},
	}
}

const (
	web, client, other, web6, remoteWeb = "10.42.0.10", "10.42.0.11", "10.42.0.12", "10.42.0.20", "10.42.1.10"
	bClient, bOther, cClient, nodeIP    = "10.42.1.11", "10.42.1.13", "10.42.1.12", "192.168.1.5"
	client6, web66                      = "fd00:42::11", "fd00:42::20"
)

func mkPod(namespace, name, nodeName string, ips []string, lbls map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: lbls, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[0]},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	return p
}

func mkNS(name string, lbls map[string]string) *corev1.Namespace {
	l := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range lbls {
		l[k] = v
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func mkPolicy(namespace, name string, sel map[string]string, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, out []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: sel}, PolicyTypes: types, Ingress: in, Egress: out,
		},
	}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	both        = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)

func tcpPort(p int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(int32(p))
	return networkingv1.NetworkPolicyPort{Port: &v}
}

func protoPort(proto corev1.Protocol, p intstr.IntOrString) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func podPeer(lbls map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: lbls}}
}

// build runs Build for st on a fake and returns it.
func build(t *testing.T, st State) *knftables.Fake {
	t.Helper()
	fake := knftables.NewFake(knftables.InetFamily, Table)
	tx := fake.NewTransaction()
	Build(tx, st)
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatalf("transaction refused: %v\n%s", err, tx.String())
	}
	return fake
}

type flow struct {
	hook, src, dst, proto string
	port                  int
	want                  bool
}

func fwd(src, dst string, port int, want bool) flow {
	return flow{"forward", src, dst, "tcp", port, want}
}

func check(t *testing.T, fake *knftables.Fake, flows ...flow) {
	t.Helper()
	for _, f := range flows {
		got := passes(t, fake, packet{hook: f.hook, src: f.src, dst: f.dst, proto: f.proto, dport: f.port})
		if got != f.want {
			t.Errorf("%s %s → %s %s/%d: passes = %v, want %v", f.hook, f.src, f.dst, f.proto, f.port, got, f.want)
		}
	}
	if t.Failed() {
		t.Logf("table:\n%s", fake.Dump())
	}
}

func with(st State, pols ...*networkingv1.NetworkPolicy) State {
	st.Policies = append(st.Policies, pols...)
	return st
}

func TestTableLayout(t *testing.T) {
	fake := build(t, cluster())
	tbl := fake.Table
	if tbl == nil {
		t.Fatal("no table")
	}
	for name, hook := range map[string]knftables.BaseChainHook{"forward": knftables.ForwardHook, "input": knftables.InputHook} {
		c := tbl.Chains[name]
		if c == nil || c.Hook == nil || *c.Hook != hook || *c.Type != knftables.FilterType {
			t.Fatalf("base chain %s: %+v", name, c)
		}
		if len(c.Rules) == 0 || c.Rules[0].Rule != "ct state established,related accept" {
			t.Errorf("%s: established connections must pass first: %v", name, c.Rules)
		}
	}
	// Traffic the node sends itself (kubelet probes) is never filtered.
	for name, c := range tbl.Chains {
		if c.Hook != nil && *c.Hook != knftables.ForwardHook && *c.Hook != knftables.InputHook {
			t.Errorf("chain %s hooks %s", name, *c.Hook)
		}
	}
	// No policy: nothing restricted, the maps are empty.
	check(t, fake, fwd(client, web, 8080, true), fwd(bClient, web, 1, true),
		flow{"input", client, nodeIP, "udp", 53, true})
	for _, m := range tbl.Maps {
		if len(m.Elements) != 0 {
			t.Errorf("map %s has elements without policies: %v", m.Name, m.Elements)
		}
	}
}

func TestDefaultDeny(t *testing.T) {
	t.Run("ingress", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "deny", nil, ingressOnly, nil, nil)))
		check(t, fake,
			fwd(client, web, 8080, false), fwd(bClient, web, 8080, false), fwd(nodeIP, web, 8080, false),
			flow{"forward", client6, web66, "udp", 53, false},
			// egress not restricted: to pods elsewhere, to the node
			fwd(web, bClient, 80, true), flow{"input", web, nodeIP, "tcp", 10250, true},
			// pods of other namespaces are not selected
			fwd(web, "10.42.0.99", 80, true))
		// established connections continue
		if !passes(t, fake, packet{hook: "forward", src: client, dst: web, proto: "tcp", dport: 8080, established: true}) {
			t.Error("established connection dropped")
		}
	})
	t.Run("ingress by default policy type", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "deny", nil, nil, nil, nil)))
		check(t, fake, fwd(client, web, 8080, false), fwd(web, bClient, 80, true))
	})
	t.Run("egress", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "deny", nil, egressOnly, nil, nil)))
		check(t, fake,
			fwd(client, web, 8080, false), fwd(client, bClient, 80, false), fwd(client, "8.8.8.8", 53, false),
			flow{"input", client, nodeIP, "tcp", 6443, false}, flow{"input", client6, "fd00::1", "tcp", 6443, false},
			// ingress not restricted
			fwd(bClient, web, 8080, true), flow{"input", bClient, nodeIP, "tcp", 6443, true})
	})
	t.Run("all", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "deny", nil, both, nil, nil)))
		check(t, fake, fwd(bClient, web, 8080, false), fwd(web, bClient, 80, false), fwd(bClient, bOther, 80, true),
			// a pod reaches itself through a Service (hairpin)
			fwd(web, web, 8080, true), flow{"forward", client6, client6, "udp", 53, true}, fwd(client, web, 8080, false))
	})
	t.Run("unselected pods unrestricted", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "deny", map[string]string{"app": "web"}, both, nil, nil)))
		check(t, fake, fwd(client, other, 80, true), fwd(client, web, 80, false), fwd(web, other, 80, false))
	})
}

func TestPeers(t *testing.T) {
	allow := func(peers ...networkingv1.NetworkPolicyPeer) State {
		return with(cluster(), mkPolicy("default", "allow", map[string]string{"app": "web"}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: peers}}, nil))
	}
	t.Run("podSelector", func(t *testing.T) {
		fake := build(t, allow(podPeer(map[string]string{"role": "client"})))
		check(t, fake, fwd(client, web, 8080, true), fwd(client, web, 1, true),
			flow{"forward", client6, web66, "tcp", 9090, true},
			fwd(other, web, 8080, false), fwd(bClient, web, 8080, false), fwd(nodeIP, web, 8080, false))
	})
	t.Run("namespaceSelector", func(t *testing.T) {
		fake := build(t, allow(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}}))
		check(t, fake, fwd(bClient, web, 8080, true), fwd(bOther, web, 8080, true),
			fwd(cClient, web, 8080, false), fwd(client, web, 8080, false))
	})
	t.Run("both in one peer", func(t *testing.T) {
		fake := build(t, allow(networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"b", "c"}}}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}},
		}))
		check(t, fake, fwd(bClient, web, 8080, true), fwd(cClient, web, 8080, true),
			fwd(bOther, web, 8080, false), fwd(client, web, 8080, false))
	})
	t.Run("hostNetwork pods only match ipBlocks", func(t *testing.T) {
		fake := build(t, allow(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}))
		check(t, fake, fwd(client, web, 8080, true), fwd(nodeIP, web, 8080, false))
		fake = build(t, allow(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: nodeIP + "/32"}}))
		check(t, fake, fwd(nodeIP, web, 8080, true), fwd(client, web, 8080, false))
		// and are never selected themselves
		for _, m := range fake.Table.Maps {
			for _, e := range m.Elements {
				if e.Key[0] == nodeIP {
					t.Errorf("hostNetwork pod in map %s", m.Name)
				}
			}
		}
	})
	t.Run("ipBlock with except", func(t *testing.T) {
		fake := build(t, allow(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16", Except: []string{other + "/32", "10.42.1.0/25"}}}))
		check(t, fake, fwd(client, web, 8080, true), fwd("10.42.1.200", web, 80, true), fwd("10.42.200.1", web, 80, true),
			fwd(other, web, 8080, false), fwd(bClient, web, 8080, false), fwd("10.43.0.1", web, 80, false))
		// 10.42.0.0/16 less 10.42.0.12 and 10.42.1.0/25, as prefixes
		set := fake.Table.Sets["ingress/default/allow/0/ip"]
		if set == nil || len(set.Elements) != 16 || len(set.Flags) != 1 || set.Flags[0] != knftables.IntervalFlag {
			t.Errorf("set: %+v", set)
		}
	})
	t.Run("empty from is every source", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "allow", map[string]string{"app": "web"}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{}}, nil)))
		check(t, fake, fwd(nodeIP, web, 1, true), fwd("203.0.113.1", web, 80, true), flow{"forward", "fd00::9", web66, "udp", 5, true})
	})
	t.Run("several policies add up", func(t *testing.T) {
		fake := build(t, with(cluster(),
			mkPolicy("default", "a", map[string]string{"app": "web"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"role": "client"})}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(80)}}}, nil),
			mkPolicy("default", "b", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(nil)}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(81)}}}, nil)))
		check(t, fake, fwd(client, web, 80, true), fwd(client, web, 81, true), fwd(other, web, 81, true),
			fwd(other, web, 80, false), fwd(client, web, 82, false), fwd(web, other, 81, true), fwd(web, other, 80, false))
	})
}

func TestPorts(t *testing.T) {
	ingress := func(ports ...networkingv1.NetworkPolicyPort) State {
		return with(cluster(), mkPolicy("default", "p", map[string]string{"app": "web"}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: ports}}, nil))
	}
	t.Run("protocols", func(t *testing.T) {
		fake := build(t, ingress(tcpPort(53), protoPort(corev1.ProtocolSCTP, intstr.FromInt32(9))))
		check(t, fake, fwd(client, web, 53, true), flow{"forward", client, web, "udp", 53, false},
			flow{"forward", client, web, "sctp", 9, true}, fwd(client, web, 9, false), flow{"forward", client, web, "icmp", 0, false})
		fake = build(t, ingress(protoPort(corev1.ProtocolUDP, intstr.FromInt32(53))))
		check(t, fake, flow{"forward", client, web, "udp", 53, true}, fwd(client, web, 53, false))
	})
	t.Run("protocol without port", func(t *testing.T) {
		udp := corev1.ProtocolUDP
		fake := build(t, ingress(networkingv1.NetworkPolicyPort{Protocol: &udp}))
		check(t, fake, flow{"forward", client, web, "udp", 1, true}, flow{"forward", client, web, "udp", 65535, true}, fwd(client, web, 1, false))
	})
	t.Run("range", func(t *testing.T) {
		p := tcpPort(8000)
		p.EndPort = new(int32)
		*p.EndPort = 8100
		fake := build(t, ingress(p, tcpPort(8101), tcpPort(9000)))
		check(t, fake, fwd(client, web, 8000, true), fwd(client, web, 8050, true), fwd(client, web, 8101, true),
			fwd(client, web, 9000, true), fwd(client, web, 7999, false), fwd(client, web, 8102, false))
	})
	t.Run("named, ingress", func(t *testing.T) {
		fake := build(t, ingress(protoPort(corev1.ProtocolTCP, intstr.FromString("http")), protoPort(corev1.ProtocolUDP, intstr.FromString("dns"))))
		check(t, fake,
			fwd(client, web, 8080, true), flow{"forward", client, web, "udp", 53, true},
			fwd(client, web, 80, false), flow{"forward", client, web, "udp", 8080, false}, fwd(client, web, 53, false),
			// each pod's own port of that name
			fwd(client, web6, 9090, true), fwd(client, web6, 8080, false), flow{"forward", client6, web66, "tcp", 9090, true})
	})
	t.Run("named port nobody has", func(t *testing.T) {
		fake := build(t, ingress(protoPort(corev1.ProtocolTCP, intstr.FromString("nope"))))
		check(t, fake, fwd(client, web, 8080, false), fwd(client, web, 1, false))
	})
	t.Run("named, egress", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "p", map[string]string{"role": "client"}, egressOnly, nil,
			[]networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "web"})},
				Ports: []networkingv1.NetworkPolicyPort{protoPort(corev1.ProtocolTCP, intstr.FromString("http"))},
			}})))
		check(t, fake,
			fwd(client, web, 8080, true), fwd(client, web6, 9090, true), fwd(client, remoteWeb, 8081, true),
			flow{"forward", client6, web66, "tcp", 9090, true},
			fwd(client, web, 9090, false), fwd(client, web6, 8080, false), fwd(client, remoteWeb, 8080, false),
			fwd(client, other, 8080, false),
			// a pod with that port name, but not a peer
			fwd(client, "10.42.1.14", 7777, false))
	})
	t.Run("empty to with ports", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "p", map[string]string{"role": "client"}, egressOnly, nil,
			[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{tcpPort(53), protoPort(corev1.ProtocolUDP, intstr.FromInt32(53))}}})))
		check(t, fake, fwd(client, "8.8.8.8", 53, true), flow{"forward", client, "8.8.8.8", "udp", 53, true},
			fwd(client, "8.8.8.8", 80, false), flow{"input", client, nodeIP, "udp", 53, true}, flow{"input", client, nodeIP, "tcp", 6443, false})
	})
}

func TestEgress(t *testing.T) {
	t.Run("DNS only", func(t *testing.T) {
		st := cluster()
		st.Namespaces = append(st.Namespaces, mkNS("kube-system", nil))
		st.Pods = append(st.Pods, mkPod("kube-system", "coredns", "n2", []string{"10.42.1.2"}, map[string]string{"k8s-app": "kube-dns"}))
		fake := build(t, with(st, mkPolicy("default", "dns", nil, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
				PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
			}},
			Ports: []networkingv1.NetworkPolicyPort{protoPort(corev1.ProtocolUDP, intstr.FromInt32(53)), tcpPort(53)},
		}})))
		check(t, fake, flow{"forward", client, "10.42.1.2", "udp", 53, true}, fwd(client, "10.42.1.2", 53, true),
			fwd(client, "10.42.1.2", 80, false), flow{"forward", client, "8.8.8.8", "udp", 53, false}, fwd(client, web, 8080, false))
	})
	t.Run("ipBlock except", func(t *testing.T) {
		fake := build(t, with(cluster(), mkPolicy("default", "out", map[string]string{"role": "client"}, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}},
		}})))
		check(t, fake, fwd(client, "8.8.8.8", 443, true), flow{"input", client, nodeIP, "tcp", 6443, true},
			fwd(client, web, 8080, false), flow{"forward", client6, web66, "tcp", 80, false})
	})
}

func TestOnlyLocalPodsEnforced(t *testing.T) {
	fake := build(t, with(cluster(), mkPolicy("default", "deny", nil, both, nil, nil)))
	// remote-web is selected but enforced on n2: traffic arriving there
	// and leaving it is not this node's business.
	check(t, fake, fwd(client6, "fd00:42::99", 1, false), fwd(bClient, remoteWeb, 80, true), fwd(remoteWeb, bClient, 80, true))
	var keys []string
	for _, e := range fake.Table.Maps[mapIngress4].Elements {
		keys = append(keys, e.Key[0])
	}
	slices.Sort(keys)
	if strings.Join(keys, ",") != strings.Join([]string{web, client, other, web6}, ",") {
		t.Errorf("ingress map keys %v", keys)
	}
	if n := len(fake.Table.Maps[mapIngress6].Elements); n != 2 {
		t.Errorf("IPv6 ingress map has %d elements, want 2 (client, web6)", n)
	}
}

// Odd input never panics and never makes a transaction nft would refuse.
func TestOddInput(t *testing.T) {
	st := cluster()
	noIP := mkPod("default", "pending", node, []string{""}, map[string]string{"app": "web"})
	noIP.Status.PodIPs = nil
	done := mkPod("default", "done", node, []string{client}, map[string]string{"app": "web"})
	done.Status.Phase = corev1.PodSucceeded
	dup := mkPod("default", "dup", node, []string{web}, map[string]string{"app": "web"})
	dup.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	bogus := mkPod("default", "bogus", node, []string{"not-an-ip"}, nil)
	st.Pods = append(st.Pods, nil, noIP, done, dup, bogus)
	st.Namespaces = append(st.Namespaces, nil)
	badSel := mkPolicy("default", "bad", nil, nil, nil, nil)
	badSel.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}
	weird := corev1.Protocol("ICMP")
	strPort := intstr.FromString("")
	long := strings.Repeat("a", 253)
	st.Policies = append(st.Policies, nil, badSel,
		mkPolicy("default", long, map[string]string{"app": "web"}, both,
			[]networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{}, {IPBlock: &networkingv1.IPBlock{CIDR: "garbage"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "10.1.2.3/8", Except: []string{"bad", "10.0.0.0/9"}}},
					{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "nope"}}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &weird}, {Port: &strPort}},
			}, {Ports: []networkingv1.NetworkPolicyPort{{}}}},
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}}}}))
	fake := build(t, st)
	// The policy with only unusable ports allows nothing on that rule; its
	// second rule allows TCP on every port.
	check(t, fake, fwd("10.200.0.1", web, 80, true), flow{"forward", "10.200.0.1", web, "udp", 80, false},
		flow{"forward", "10.0.0.1", web, "udp", 80, false})
	// The live pod owns the shared IP, not the terminating one.
	for _, e := range fake.Table.Maps[mapIngress4].Elements {
		if e.Key[0] == web && !strings.HasSuffix(e.Value[0], "/default/web") {
			t.Errorf("IP %s jumps to %s", web, e.Value[0])
		}
	}
	for name := range fake.Table.Chains {
		if len(name) > 250 {
			t.Errorf("chain name too long: %s", name)
		}
	}
	for name := range fake.Table.Sets {
		if len(name) > 250 {
			t.Errorf("set name too long: %s", name)
		}
	}
}

func TestSyncSkipsUnchangedAndDeletes(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.InetFamily, Table)
	st := with(cluster(), mkPolicy("default", "deny", nil, ingressOnly, nil, nil))
	script, err := sync(ctx, fake, st, "", true)
	if err != nil {
		t.Fatal(err)
	}
	last := fake.LastTransaction
	if again, err := sync(ctx, fake, st, script, false); err != nil || again != script || fake.LastTransaction != last {
		t.Errorf("unchanged state rewrote the table (err %v)", err)
	}
	if _, err := sync(ctx, fake, st, script, true); err != nil || fake.LastTransaction == last {
		t.Errorf("forced sync did not rewrite the table (err %v)", err)
	}
	st.Policies = nil
	if _, err := sync(ctx, fake, st, script, false); err != nil {
		t.Fatal(err)
	}
	check(t, fake, fwd(client, web, 8080, true))
	if removed, err := deleteTable(ctx, fake); err != nil || !removed || fake.Table != nil {
		t.Errorf("deleteTable: removed %v, err %v, table %v", removed, err, fake.Table)
	}
	if removed, err := deleteTable(ctx, fake); err != nil || removed {
		t.Errorf("deleteTable without a table: removed %v, err %v", removed, err)
	}
}

func TestRanges(t *testing.T) {
	got := elements(merge(ipBlock(&networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"10.0.0.128/25", "10.0.0.1/32"}})))
	want := "10.0.0.0,10.0.0.2/31,10.0.0.4/30,10.0.0.8/29,10.0.0.16/28,10.0.0.32/27,10.0.0.64/26"
	if strings.Join(got, ",") != want {
		t.Errorf("got %v, want %s", got, want)
	}
	got = elements(merge(append(ipBlock(&networkingv1.IPBlock{CIDR: "0.0.0.0/1"}), ipBlock(&networkingv1.IPBlock{CIDR: "128.0.0.0/1"})...)))
	if strings.Join(got, ",") != "0.0.0.0/0" {
		t.Errorf("adjacent halves: %v", got)
	}
	got = elements(merge(ipBlock(&networkingv1.IPBlock{CIDR: "fd00::/64", Except: []string{"fd00::/65"}})))
	if strings.Join(got, ",") != "fd00::8000:0:0:0/65" {
		t.Errorf("IPv6: %v", got)
	}
}
