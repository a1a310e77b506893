package netpol

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/knftables"
)

// Table is the nftables table (family inet) that holds all of the node's
// NetworkPolicy rules. distro-killall.sh deletes it.
const Table = "distro-netpol"

// The table's fixed objects. Each selected local pod gets a chain of its own
// per direction (pod-ingress/<ns>/<pod>, pod-egress/<ns>/<pod>); each
// policy rule with peers gets address sets (<direction>/<ns>/<policy>/<n>/ip
// and /ip6, and /named-ip, /named-ip6 for egress named ports).
const (
	chainForward = "forward"
	chainInput   = "input"
	mapIngress4  = "ingress-pods-ip"
	mapIngress6  = "ingress-pods-ip6"
	mapEgress4   = "egress-pods-ip"
	mapEgress6   = "egress-pods-ip6"
)

// State is what the rules are computed from: every pod, namespace and
// NetworkPolicy of the cluster, and the node they are enforced on.
type State struct {
	NodeName   string
	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
	Policies   []*networkingv1.NetworkPolicy
}

// Stats counts what a Build produced, for the log.
type Stats struct {
	Policies, Pods              int // in the cluster
	IngressPods, EgressPods     int // local pods selected
	Chains, Rules, SetsElements int
}

// pod is a pod that policies can select or match as a peer: it has an IP
// and does not use the host network.
type pod struct {
	ns, name string
	labels   labels.Set
	ips      []netip.Addr
	ports    []corev1.ContainerPort
	local    bool
	// when two local pods share an IP, the one not terminating wins,
	// then the newer one
	rank        string
	terminating bool
}

// port is one entry of a rule's ports: a protocol with all its ports, a
// port range, or a named port.
type port struct {
	proto  string // tcp, udp, sctp
	all    bool
	lo, hi int
	name   string
}

// rule is one ingress or egress rule of a policy.
type rule struct {
	base     string // set name prefix: <direction>/<ns>/<policy>/<index>
	allPeers bool
	peers    map[bool][]ipRange // by "is IPv4"; merged
	ports    []port             // none: every port and protocol
	none     bool               // allows nothing
}

type policy struct {
	ns, name          string
	selector          labels.Selector
	ingress, egress   bool
	inRules, outRules []rule
}

// Build writes the whole table into tx: it deletes the table and creates it
// anew, so running tx replaces every rule in one atomic step.
func Build(tx *knftables.Transaction, st State) Stats {
	b := &builder{tx: tx, st: st, sets: map[string]bool{}, named: map[string][]bool{}}
	return b.build()
}

type builder struct {
	tx    *knftables.Transaction
	st    State
	pods  []*pod
	nsLbl map[string]labels.Set
	sets  map[string]bool   // peer sets created already
	named map[string][]bool // egress rule → families with a named-port set
	stats Stats
}

func (b *builder) build() Stats {
	tx := b.tx
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("distro: NetworkPolicy enforcement")})
	for _, m := range []struct{ name, typ string }{
		{mapIngress4, "ipv4_addr : verdict"}, {mapIngress6, "ipv6_addr : verdict"},
		{mapEgress4, "ipv4_addr : verdict"}, {mapEgress6, "ipv6_addr : verdict"},
	} {
		tx.Add(&knftables.Map{Name: m.name, Type: m.typ})
	}
	// Established and related packets pass before any policy (and IPv6
	// neighbour discovery): a policy
	// change applies to new connections. A packet to or from a selected
	// local pod jumps to that pod's chain, which returns when a policy
	// allows it and drops it otherwise. Forward sees pod traffic across
	// the bridge (br_netfilter), over flannel and after kube-proxy's DNAT;
	// input sees pods talking to the node itself (egress only). Traffic the
	// node sends (kubelet probes) goes through output, which has no chain.
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
		maps [][2]string
	}{
		{chainForward, knftables.ForwardHook, [][2]string{{"ip daddr", mapIngress4}, {"ip6 daddr", mapIngress6}, {"ip saddr", mapEgress4}, {"ip6 saddr", mapEgress6}}},
		{chainInput, knftables.InputHook, [][2]string{{"ip saddr", mapEgress4}, {"ip6 saddr", mapEgress6}}},
	} {
		tx.Add(&knftables.Chain{
			Name: c.name, Type: knftables.PtrTo(knftables.FilterType), Hook: knftables.PtrTo(c.hook),
			Priority: knftables.PtrTo(knftables.FilterPriority),
		})
		b.rule(c.name, "ct state established,related accept")
		// IPv6 neighbour discovery is not pod traffic: without it a pod
		// could not reach even what its policies allow.
		b.rule(c.name, "meta l4proto ipv6-icmp icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept")
		for _, m := range c.maps {
			b.rule(c.name, m[0]+" vmap @"+m[1])
		}
		b.stats.Chains++
	}

	b.collect()
	policies := b.policies()
	b.stats.Policies = len(policies)

	// Each local pod, with the policies that select it per direction.
	type selected struct {
		p       *pod
		in, out []*policy
	}
	var local []*selected
	for _, p := range b.pods {
		if !p.local {
			continue
		}
		s := &selected{p: p}
		for _, pol := range policies {
			if pol.ns != p.ns || !pol.selector.Matches(p.labels) {
				continue
			}
			if pol.ingress {
				s.in = append(s.in, pol)
			}
			if pol.egress {
				s.out = append(s.out, pol)
			}
		}
		if len(s.in)+len(s.out) > 0 {
			local = append(local, s)
		}
	}

	// Local pods sharing an IP (a terminating pod and its successor): a
	// map takes a key once; the live, newer pod wins.
	owners := func(ingress bool) map[netip.Addr]*pod {
		owner := map[netip.Addr]*pod{}
		for _, s := range local {
			if ingress && len(s.in) == 0 || !ingress && len(s.out) == 0 {
				continue
			}
			for _, ip := range s.p.ips {
				if o := owner[ip]; o == nil || better(s.p, o) {
					owner[ip] = s.p
				}
			}
		}
		return owner
	}
	inOwner, outOwner := owners(true), owners(false)

	for _, s := range local {
		if len(s.in) > 0 {
			b.stats.IngressPods++
			chain := objName("pod-ingress", s.p.ns, s.p.name)
			b.podChain(chain, s.p, s.in, true)
			b.mapPod(s.p, inOwner, chain, mapIngress4, mapIngress6)
		}
		if len(s.out) > 0 {
			b.stats.EgressPods++
			chain := objName("pod-egress", s.p.ns, s.p.name)
			b.podChain(chain, s.p, s.out, false)
			b.mapPod(s.p, outOwner, chain, mapEgress4, mapEgress6)
		}
	}
	return b.stats
}

func better(a, b *pod) bool {
	if a.terminating != b.terminating {
		return !a.terminating
	}
	return a.rank > b.rank
}

func (b *builder) rule(chain, r string) {
	b.tx.Add(&knftables.Rule{Chain: chain, Rule: r})
	b.stats.Rules++
}

func (b *builder) mapPod(p *pod, owner map[netip.Addr]*pod, chain, map4, map6 string) {
	for _, ip := range p.ips {
		if owner[ip] != p {
			continue
		}
		m := map6
		if ip.Is4() {
			m = map4
		}
		b.tx.Add(&knftables.Element{Map: m, Key: []string{ip.String()}, Value: []string{"jump " + chain}})
		b.stats.SetsElements++
	}
}

// collect keeps the pods policies can apply to, and the namespaces' labels.
func (b *builder) collect() {
	b.nsLbl = map[string]labels.Set{}
	for _, ns := range b.st.Namespaces {
		if ns != nil {
			b.nsLbl[ns.Name] = labels.Set(ns.Labels)
		}
	}
	for _, p := range b.st.Pods {
		if p == nil || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		var ips []netip.Addr
		seen := map[netip.Addr]bool{}
		add := func(s string) {
			if a, err := netip.ParseAddr(s); err == nil && !seen[a.Unmap()] {
				seen[a.Unmap()] = true
				ips = append(ips, a.Unmap())
			}
		}
		add(p.Status.PodIP)
		for _, ip := range p.Status.PodIPs {
			add(ip.IP)
		}
		if len(ips) == 0 {
			continue
		}
		q := &pod{
			ns: p.Namespace, name: p.Name, labels: labels.Set(p.Labels), ips: ips,
			local:       b.st.NodeName != "" && p.Spec.NodeName == b.st.NodeName,
			rank:        p.CreationTimestamp.UTC().Format("20060102150405") + string(p.UID),
			terminating: p.DeletionTimestamp != nil,
		}
		for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for _, c := range cs {
				q.ports = append(q.ports, c.Ports...)
			}
		}
		b.pods = append(b.pods, q)
	}
	b.stats.Pods = len(b.pods)
	sort.Slice(b.pods, func(i, j int) bool {
		if b.pods[i].ns != b.pods[j].ns {
			return b.pods[i].ns < b.pods[j].ns
		}
		return b.pods[i].name < b.pods[j].name
	})
}

// policies compiles the NetworkPolicies, sorted by namespace and name. A
// policy whose selector cannot be parsed (the apiserver's validation
// refuses those) is left out.
func (b *builder) policies() []*policy {
	var out []*policy
	for _, np := range b.st.Policies {
		if np == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			continue
		}
		p := &policy{ns: np.Namespace, name: np.Name, selector: sel}
		if len(np.Spec.PolicyTypes) == 0 {
			p.ingress, p.egress = true, len(np.Spec.Egress) > 0
		}
		for _, t := range np.Spec.PolicyTypes {
			switch t {
			case networkingv1.PolicyTypeIngress:
				p.ingress = true
			case networkingv1.PolicyTypeEgress:
				p.egress = true
			}
		}
		if p.ingress {
			for i, r := range np.Spec.Ingress {
				p.inRules = append(p.inRules, b.compileRule(objName("ingress", p.ns, p.name, strconv.Itoa(i)), np.Namespace, r.From, r.Ports))
			}
		}
		if p.egress {
			for i, r := range np.Spec.Egress {
				p.outRules = append(p.outRules, b.compileRule(objName("egress", p.ns, p.name, strconv.Itoa(i)), np.Namespace, r.To, r.Ports))
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ns != out[j].ns {
			return out[i].ns < out[j].ns
		}
		return out[i].name < out[j].name
	})
	return out
}

func (b *builder) compileRule(base, ns string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) rule {
	r := rule{base: base, allPeers: len(peers) == 0, peers: map[bool][]ipRange{}}
	for _, peer := range peers {
		if peer.IPBlock != nil {
			for _, rg := range ipBlock(peer.IPBlock) {
				r.peers[rg.lo.Is4()] = append(r.peers[rg.lo.Is4()], rg)
			}
			continue
		}
		if peer.PodSelector == nil && peer.NamespaceSelector == nil {
			continue // not valid: matches nothing
		}
		podSel, nsSel := labels.Everything(), labels.Selector(nil)
		var err error
		if peer.PodSelector != nil {
			if podSel, err = metav1.LabelSelectorAsSelector(peer.PodSelector); err != nil {
				continue
			}
		}
		if peer.NamespaceSelector != nil {
			if nsSel, err = metav1.LabelSelectorAsSelector(peer.NamespaceSelector); err != nil {
				continue
			}
		}
		for _, p := range b.pods {
			if nsSel == nil && p.ns != ns || nsSel != nil && !nsSel.Matches(b.nsLbl[p.ns]) || !podSel.Matches(p.labels) {
				continue
			}
			for _, ip := range p.ips {
				r.peers[ip.Is4()] = append(r.peers[ip.Is4()], ipRange{ip, ip})
			}
		}
	}
	for fam, rs := range r.peers {
		r.peers[fam] = merge(rs)
	}
	for _, p := range ports {
		proto := "tcp"
		if p.Protocol != nil {
			proto = strings.ToLower(string(*p.Protocol))
		}
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			continue
		}
		switch {
		case p.Port == nil:
			r.ports = append(r.ports, port{proto: proto, all: true})
		case p.Port.Type == intstr.String:
			if p.Port.StrVal != "" {
				r.ports = append(r.ports, port{proto: proto, name: p.Port.StrVal})
			}
		default:
			lo, hi := int(p.Port.IntVal), int(p.Port.IntVal)
			if p.EndPort != nil && int(*p.EndPort) > lo {
				hi = int(*p.EndPort)
			}
			if lo >= 1 && hi <= 65535 {
				r.ports = append(r.ports, port{proto: proto, lo: lo, hi: hi})
			}
		}
	}
	// Ports given but none usable: the rule allows nothing (an empty list
	// would read as every port).
	r.none = len(ports) > 0 && len(r.ports) == 0
	return r
}

// ipBlock returns the CIDR's addresses less its exceptions.
func ipBlock(blk *networkingv1.IPBlock) []ipRange {
	p, err := netip.ParsePrefix(strings.TrimSpace(blk.CIDR))
	if err != nil {
		return nil
	}
	rs := []ipRange{prefixRange(unmapPrefix(p))}
	for _, e := range blk.Except {
		x, err := netip.ParsePrefix(strings.TrimSpace(e))
		if err != nil {
			continue
		}
		var next []ipRange
		for _, r := range rs {
			next = append(next, r.subtract(prefixRange(unmapPrefix(x)))...)
		}
		rs = next
	}
	return rs
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		return netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p
}

// podChain writes the chain of one local pod for one direction: each
// policy rule that allows the packet returns to the base chain, the rest
// is dropped.
func (b *builder) podChain(chain string, p *pod, pols []*policy, ingress bool) {
	b.tx.Add(&knftables.Chain{Name: chain, Comment: knftables.PtrTo(dirName(ingress) + " of pod " + p.ns + "/" + p.name)})
	b.stats.Chains++
	peerAddr := "daddr"
	if ingress {
		peerAddr = "saddr"
	}
	// A pod reaches itself through a Service (hairpin) as it does over
	// localhost, whatever its policies say.
	for _, ip := range p.ips {
		b.rule(chain, familyName(ip.Is4())+" "+peerAddr+" "+ip.String()+" return")
	}
	for _, pol := range pols {
		rules := pol.outRules
		if ingress {
			rules = pol.inRules
		}
		for _, r := range rules {
			if r.none {
				continue
			}
			// Peer matches: none for "every peer", else one per family
			// with addresses.
			var peerMatches []string
			if r.allPeers {
				peerMatches = []string{""}
			} else {
				for _, fam := range []bool{true, false} {
					if len(r.peers[fam]) == 0 {
						continue
					}
					set := r.base + "/" + familyName(fam)
					b.ensureSet(set, fam, r.peers[fam])
					peerMatches = append(peerMatches, familyName(fam)+" "+peerAddr+" @"+set+" ")
				}
			}
			// Port matches: none for "every port", else per protocol.
			var portMatches []string
			if len(r.ports) == 0 {
				portMatches = []string{""}
			} else {
				byProto := map[string][]port{}
				for _, pt := range r.ports {
					if pt.name != "" {
						if !ingress {
							continue // resolved per peer pod below
						}
						// Ingress: against this pod's own container ports.
						for _, n := range namedPorts(p, pt) {
							byProto[pt.proto] = append(byProto[pt.proto], port{proto: pt.proto, lo: n, hi: n})
						}
						continue
					}
					byProto[pt.proto] = append(byProto[pt.proto], pt)
				}
				for _, proto := range []string{"tcp", "udp", "sctp"} {
					if m := portMatch(proto, byProto[proto]); m != "" {
						portMatches = append(portMatches, m)
					}
				}
			}
			for _, pm := range peerMatches {
				for _, po := range portMatches {
					b.rule(chain, pm+po+"return")
				}
			}
			if !ingress {
				b.egressNamedPorts(chain, r)
			}
		}
	}
	b.rule(chain, "counter drop")
}

func dirName(ingress bool) string {
	if ingress {
		return "ingress"
	}
	return "egress"
}

func familyName(v4 bool) string {
	if v4 {
		return "ip"
	}
	return "ip6"
}

// portMatch renders the ports of one protocol: "meta l4proto tcp " for all
// of them, else with "th dport { 80, 8000-8080 } ".
func portMatch(proto string, ports []port) string {
	if len(ports) == 0 {
		return ""
	}
	type rg struct{ lo, hi int }
	var rs []rg
	for _, p := range ports {
		if p.all {
			return "meta l4proto " + proto + " "
		}
		rs = append(rs, rg{p.lo, p.hi})
	}
	slices.SortFunc(rs, func(a, b rg) int { return a.lo - b.lo })
	merged := []rg{rs[0]}
	for _, r := range rs[1:] {
		last := &merged[len(merged)-1]
		if r.lo <= last.hi+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	var elems []string
	for _, r := range merged {
		if r.lo == r.hi {
			elems = append(elems, strconv.Itoa(r.lo))
		} else {
			elems = append(elems, fmt.Sprintf("%d-%d", r.lo, r.hi))
		}
	}
	return "meta l4proto " + proto + " th dport { " + strings.Join(elems, ", ") + " } "
}

// namedPorts resolves a named port against a pod's container ports of the
// same protocol.
func namedPorts(p *pod, pt port) []int {
	var out []int
	for _, cp := range p.ports {
		proto := strings.ToLower(string(cp.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		if cp.Name == pt.name && proto == pt.proto && cp.ContainerPort > 0 && cp.ContainerPort <= 65535 && !slices.Contains(out, int(cp.ContainerPort)) {
			out = append(out, int(cp.ContainerPort))
		}
	}
	return out
}

// egressNamedPorts allows an egress rule's named ports: each resolved
// against the pods among the rule's peers, as (address, protocol, port)
// tuples.
func (b *builder) egressNamedPorts(chain string, r rule) {
	fams, done := b.named[r.base]
	if !done {
		fams = b.namedSets(r)
		b.named[r.base] = fams
	}
	for _, fam := range fams {
		set := r.base + "/named-" + familyName(fam)
		b.rule(chain, familyName(fam)+" daddr . meta l4proto . th dport @"+set+" return")
	}
}

// namedSets creates the tuple sets of an egress rule's named ports and
// returns the families that have one.
func (b *builder) namedSets(r rule) []bool {
	tuples := map[bool][]string{}
	seen := map[string]bool{}
	for _, pt := range r.ports {
		if pt.name == "" {
			continue
		}
		for _, p := range b.pods {
			nums := namedPorts(p, pt)
			if len(nums) == 0 {
				continue
			}
			for _, ip := range p.ips {
				if !r.allPeers && !contains(r.peers[ip.Is4()], ip) {
					continue
				}
				for _, n := range nums {
					k := ip.String() + " . " + pt.proto + " . " + strconv.Itoa(n)
					if !seen[k] {
						seen[k] = true
						tuples[ip.Is4()] = append(tuples[ip.Is4()], k)
					}
				}
			}
		}
	}
	var fams []bool
	for _, fam := range []bool{true, false} {
		if len(tuples[fam]) == 0 {
			continue
		}
		fams = append(fams, fam)
		set := r.base + "/named-" + familyName(fam)
		addr := "ipv6_addr"
		if fam {
			addr = "ipv4_addr"
		}
		b.tx.Add(&knftables.Set{Name: set, Type: addr + " . inet_proto . inet_service"})
		for _, t := range tuples[fam] {
			b.tx.Add(&knftables.Element{Set: set, Key: strings.Split(t, " . ")})
			b.stats.SetsElements++
		}
	}
	return fams
}

// ensureSet creates a peer address set once.
func (b *builder) ensureSet(name string, v4 bool, rs []ipRange) {
	if b.sets[name] {
		return
	}
	b.sets[name] = true
	typ := "ipv6_addr"
	if v4 {
		typ = "ipv4_addr"
	}
	b.tx.Add(&knftables.Set{Name: name, Type: typ, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
	for _, e := range elements(rs) {
		b.tx.Add(&knftables.Element{Set: name, Key: []string{e}})
		b.stats.SetsElements++
	}
}

// objName joins parts with "/" into a chain or set name; names nftables
// would refuse as too long become the prefix and a hash.
func objName(prefix string, parts ...string) string {
	n := prefix + "/" + strings.Join(parts, "/")
	if len(n) <= 200 {
		return n
	}
	h := sha256.Sum256([]byte(n))
	return prefix + "/" + hex.EncodeToString(h[:8])
}
