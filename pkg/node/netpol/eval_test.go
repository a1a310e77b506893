package netpol

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

// packet is what the evaluator runs through the fake table's chains.
type packet struct {
	hook        string // forward or input
	src, dst    string
	proto       string // tcp, udp, sctp, icmp
	dport       int
	established bool
}

// passes evaluates p against the table in fake the way the kernel would
// for the rule forms Build writes. An unknown form fails the test, so the
// evaluator cannot silently drift from the rules.
func passes(t *testing.T, fake *knftables.Fake, p packet) bool {
	t.Helper()
	if fake.Table == nil || fake.Table.Chains[p.hook] == nil {
		return true
	}
	e := &evaluator{t: t, tbl: fake.Table, p: p, src: netip.MustParseAddr(p.src), dst: netip.MustParseAddr(p.dst)}
	return e.run(p.hook, 0) != "drop"
}

type evaluator struct {
	t        *testing.T
	tbl      *knftables.FakeTable
	p        packet
	src, dst netip.Addr
}

// run returns "accept", "drop" or "" (fell through / returned).
func (e *evaluator) run(chain string, depth int) string {
	e.t.Helper()
	if depth > 16 {
		e.t.Fatalf("chain depth exceeded at %s", chain)
	}
	c := e.tbl.Chains[chain]
	if c == nil {
		e.t.Fatalf("no chain %q", chain)
	}
rules:
	for _, r := range c.Rules {
		w := strings.Fields(r.Rule)
		for i := 0; i < len(w); {
			switch {
			case w[i] == "ct" && w[i+1] == "state":
				if !e.p.established || !strings.Contains(w[i+2], "established") {
					continue rules
				}
				i += 3
			case (w[i] == "ip" || w[i] == "ip6") && i+3 < len(w) && w[i+2] == ".":
				// ip daddr . meta l4proto . th dport @set
				if w[i+1] != "daddr" || strings.Join(w[i+3:i+8], " ") != "meta l4proto . th dport" {
					e.t.Fatalf("unknown concatenation in %q", r.Rule)
				}
				if !e.family(w[i]) || !e.inSet(w[i+8][1:], e.dst.String(), e.p.proto, strconv.Itoa(e.p.dport)) {
					continue rules
				}
				i += 9
			case w[i] == "ip" || w[i] == "ip6":
				addr := e.src
				if w[i+1] == "daddr" {
					addr = e.dst
				} else if w[i+1] != "saddr" {
					e.t.Fatalf("unknown address in %q", r.Rule)
				}
				if !e.family(w[i]) {
					continue rules
				}
				if w[i+2] == "vmap" {
					v := e.lookupMap(w[i+3][1:], addr)
					if v == "" {
						continue rules
					}
					jump, ok := strings.CutPrefix(v, "jump ")
					if !ok {
						e.t.Fatalf("unknown map verdict %q", v)
					}
					if res := e.run(jump, depth+1); res != "" {
						return res
					}
					continue rules
				}
				if lit, err := netip.ParseAddr(w[i+2]); err == nil {
					if lit != addr {
						continue rules
					}
				} else if !strings.HasPrefix(w[i+2], "@") || !e.inSet(w[i+2][1:], addr.String()) {
					continue rules
				}
				i += 3
			case w[i] == "meta" && w[i+1] == "l4proto":
				if e.p.proto != w[i+2] {
					continue rules
				}
				i += 3
			case w[i] == "th" && w[i+1] == "dport" && w[i+2] == "{":
				end := slices.Index(w[i:], "}") + i
				match := false
				for _, el := range w[i+3 : end] {
					lo, hi, found := strings.Cut(strings.TrimSuffix(el, ","), "-")
					if !found {
						hi = lo
					}
					l, _ := strconv.Atoi(lo)
					h, _ := strconv.Atoi(hi)
					if e.p.dport >= l && e.p.dport <= h {
						match = true
					}
				}
				if !match {
					continue rules
				}
				i = end + 1
			case w[i] == "icmpv6" && w[i+1] == "type":
				// only reached for ipv6-icmp packets, which the tests do
				// not send
				e.t.Fatalf("icmpv6 packet in a test")
			case w[i] == "counter":
				i++
			case w[i] == "return":
				return ""
			case w[i] == "accept" || w[i] == "drop":
				return w[i]
			case w[i] == "jump":
				if res := e.run(w[i+1], depth+1); res != "" {
					return res
				}
				continue rules
			default:
				e.t.Fatalf("evaluator does not know %q in rule %q", w[i], r.Rule)
			}
		}
	}
	return ""
}

func (e *evaluator) family(f string) bool {
	return (f == "ip") == e.src.Is4()
}

func (e *evaluator) lookupMap(name string, a netip.Addr) string {
	m := e.tbl.Maps[name]
	if m == nil {
		e.t.Fatalf("no map %q", name)
	}
	for _, el := range m.Elements {
		if el.Key[0] == a.String() {
			return el.Value[0]
		}
	}
	return ""
}

// inSet matches an address (or a tuple) against a set's elements, which
// may be prefixes.
func (e *evaluator) inSet(name string, key ...string) bool {
	s := e.tbl.Sets[name]
	if s == nil {
		e.t.Fatalf("no set %q", name)
	}
	a := netip.MustParseAddr(key[0])
	for _, el := range s.Elements {
		if len(el.Key) != len(key) {
			e.t.Fatalf("set %s: element %v vs key %v", name, el.Key, key)
		}
		if p, err := netip.ParsePrefix(el.Key[0]); err == nil {
			if !p.Contains(a) {
				continue
			}
		} else if netip.MustParseAddr(el.Key[0]) != a {
			continue
		}
		if slices.Equal(el.Key[1:], key[1:]) {
			return true
		}
	}
	return false
}
