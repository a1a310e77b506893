package netpol

import (
	"net/netip"
	"slices"
)

// ipRange is an inclusive range of addresses of one family.
type ipRange struct{ lo, hi netip.Addr }

// prefixRange returns the addresses of p.
func prefixRange(p netip.Prefix) ipRange {
	p = p.Masked()
	lo := p.Addr()
	b := lo.AsSlice()
	host := lo.BitLen() - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	hi, _ := netip.AddrFromSlice(b)
	return ipRange{lo, hi}
}

// subtract returns r without the addresses of x (zero, one or two ranges).
func (r ipRange) subtract(x ipRange) []ipRange {
	if x.hi.Less(r.lo) || r.hi.Less(x.lo) || x.lo.Is4() != r.lo.Is4() {
		return []ipRange{r}
	}
	var out []ipRange
	if r.lo.Less(x.lo) {
		out = append(out, ipRange{r.lo, x.lo.Prev()})
	}
	if x.hi.Less(r.hi) {
		out = append(out, ipRange{x.hi.Next(), r.hi})
	}
	return out
}

// merge sorts ranges of one family and joins the overlapping and adjacent
// ones: an nftables interval set refuses overlapping elements.
func merge(rs []ipRange) []ipRange {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b ipRange) int { return a.lo.Compare(b.lo) })
	out := []ipRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		next := last.hi.Next() // invalid after the family's last address
		if !r.lo.Less(next) && next.IsValid() && r.lo != next {
			out = append(out, r)
			continue
		}
		if last.hi.Less(r.hi) {
			last.hi = r.hi
		}
	}
	return out
}

// prefixes splits r into the fewest CIDR prefixes that cover it exactly.
func (r ipRange) prefixes() []netip.Prefix {
	var out []netip.Prefix
	lo := r.lo
	for lo.IsValid() && !r.hi.Less(lo) {
		var p netip.Prefix
		for bits := 0; bits <= lo.BitLen(); bits++ {
			p = netip.PrefixFrom(lo, bits)
			if p.Masked().Addr() == lo && !r.hi.Less(prefixRange(p).hi) {
				break
			}
		}
		out = append(out, p)
		lo = prefixRange(p).hi.Next()
	}
	return out
}

// contains reports whether a is in one of the sorted, merged ranges.
func contains(rs []ipRange, a netip.Addr) bool {
	for _, r := range rs {
		if !a.Less(r.lo) && !r.hi.Less(a) {
			return true
		}
	}
	return false
}

// elements renders merged ranges as nftables set elements: addresses and
// CIDR prefixes.
func elements(rs []ipRange) []string {
	var out []string
	for _, r := range rs {
		for _, p := range r.prefixes() {
			if p.Bits() == p.Addr().BitLen() {
				out = append(out, p.Addr().String())
			} else {
				out = append(out, p.String())
			}
		}
	}
	return out
}
