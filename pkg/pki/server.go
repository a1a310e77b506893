package pki

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"distro/pkg/datadir"
)

// FlannelUser is the identity of the pod network (flannel), which reads
// every node and annotates its own.
const FlannelUser = "system:distro-flannel"

// ServerInput is what the server certificates depend on.
type ServerInput struct {
	Hostname      string
	NodeIPs       []net.IP
	ServiceIP     net.IP // first IP of the service CIDR (the kubernetes Service)
	ClusterDomain string
	TLSSANs       []string
	// Shared holds the cluster's SharedFiles (path relative to the TLS
	// folder → content) when this server joins a cluster: written before
	// anything is issued, so its certificates chain to the cluster's CAs.
	Shared map[string][]byte
}

// SharedFiles are the files every server of a cluster holds the same: the
// CAs, certificate and key, and the service-account signing key. A joining
// server receives them; it issues everything else itself.
var SharedFiles = []string{
	"server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key",
	"request-header-ca.crt", "request-header-ca.key",
	"etcd/server-ca.crt", "etcd/server-ca.key", "etcd/peer-ca.crt", "etcd/peer-ca.key",
	"service.key",
}

// OptionalShared are shared files a cluster may not have: the Secrets
// encryption configuration (a cluster that never turned encryption on, or
// bootstrap data sealed before it existed).
var OptionalShared = []string{datadir.EncryptionConfigName}

// ServerCerts are the cluster's CAs and this server's leaf certificates,
// written under the TLS folder as <Name>.crt and <Name>.key.
type ServerCerts struct {
	ServerCA, ClientCA, RequestHeaderCA, EtcdServerCA, EtcdPeerCA *CA
	Leaves                                                        []Leaf
}

// Services names what `distro certificate rotate --service` accepts, each
// with the leaves it renews (server and node leaves alike).
var Services = map[string][]string{
	"admin":              {"client-admin"},
	"api-server":         {"serving-kube-apiserver", "client-kube-apiserver"},
	"auth-proxy":         {"client-auth-proxy"},
	"controller-manager": {"client-controller", "serving-kube-controller-manager"},
	"scheduler":          {"client-scheduler", "serving-kube-scheduler"},
	"etcd":               {"etcd/client", "etcd/server-client", "etcd/peer-server-client"},
	"kubelet":            {"kubelet-client", "kubelet-serving"},
	"kube-proxy":         {"kube-proxy"},
	"flannel":            {"flannel"},
}

// ServiceNames lists Services' keys, sorted.
func ServiceNames() []string {
	names := make([]string, 0, len(Services))
	for n := range Services {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ForceServices returns a predicate that is true for the leaves of the
// named services (every leaf when none is named), or an error naming an
// unknown service.
func ForceServices(services []string) (func(leaf string) bool, error) {
	if len(services) == 0 {
		return func(string) bool { return true }, nil
	}
	want := map[string]bool{}
	for _, s := range services {
		leaves, ok := Services[s]
		if !ok {
			return nil, fmt.Errorf("unknown service %q: one of %s", s, strings.Join(ServiceNames(), ", "))
		}
		for _, l := range leaves {
			want[l] = true
		}
	}
	return func(leaf string) bool { return want[leaf] }, nil
}

// APIServerSANs returns the DNS names and IPs of the apiserver serving
// certificate.
func (in ServerInput) APIServerSANs() ([]string, []net.IP) {
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + in.ClusterDomain}
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), in.ServiceIP}
	if in.Hostname != "" {
		dns = append(dns, in.Hostname)
	}
	ips = append(ips, in.NodeIPs...)
	for _, san := range in.TLSSANs {
		if ip := net.ParseIP(san); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, san)
		}
	}
	return dedupStrings(dns), dedupIPs(ips)
}

// EnsureServer creates or refreshes every CA, key and leaf the control
// plane uses under dir. On first start everything is generated in a
// temporary folder that is renamed into place at the end, so a failure
// never leaves a half-written PKI.
func EnsureServer(dir string, in ServerInput) (*ServerCerts, error) {
	work := dir
	first := false
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		first = true
		work = dir + ".new"
		if err := os.RemoveAll(work); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(work, "etcd"), 0o700); err != nil {
			return nil, err
		}
	}
	if len(in.Shared) > 0 {
		if err := placeShared(work, first, in.Shared); err != nil {
			if first {
				os.RemoveAll(work)
			}
			return nil, err
		}
	}
	// Each node has its own kube-proxy and flannel certificates now; the
	// shared ones of earlier versions would only be reported as expiring.
	for _, old := range []string{"client-kube-proxy", "client-flannel"} {
		os.Remove(filepath.Join(work, old+".crt"))
		os.Remove(filepath.Join(work, old+".key"))
	}
	certs, _, err := ensureServer(work, in, nil)
	if err != nil {
		if first {
			os.RemoveAll(work)
		}
		return nil, err
	}
	if first {
		if err := os.Rename(work, dir); err != nil {
			os.RemoveAll(work)
			return nil, err
		}
	}
	return certs, nil
}

// RenewServer reissues, in an existing TLS folder, the leaves that are
// stale or for which force is true, and returns the certificates and the
// names it reissued.
func RenewServer(dir string, in ServerInput, force func(leaf string) bool) (*ServerCerts, []string, error) {
	return ensureServer(dir, in, force)
}

func ensureServer(dir string, in ServerInput, force func(string) bool) (*ServerCerts, []string, error) {
	c := &ServerCerts{}
	var err error
	for _, ca := range []struct {
		dst      **CA
		name, cn string
	}{
		{&c.ServerCA, "server-ca", "distro-server-ca"},
		{&c.ClientCA, "client-ca", "distro-client-ca"},
		{&c.RequestHeaderCA, "request-header-ca", "distro-request-header-ca"},
		{&c.EtcdServerCA, "etcd/server-ca", "distro-etcd-server-ca"},
		{&c.EtcdPeerCA, "etcd/peer-ca", "distro-etcd-peer-ca"},
	} {
		if *ca.dst, err = EnsureCA(dir, ca.name, ca.cn); err != nil {
			return nil, nil, err
		}
	}
	if err := EnsureKey(filepath.Join(dir, "service.key")); err != nil {
		return nil, nil, fmt.Errorf("service-account key: %w", err)
	}
	apiDNS, apiIPs := in.APIServerSANs()
	local := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	etcdIPs := dedupIPs(append(local, in.NodeIPs...))
	etcdDNS := dedupStrings([]string{"localhost", in.Hostname})
	c.Leaves = []Leaf{
		{Name: "serving-kube-apiserver", CA: c.ServerCA, CN: "kube-apiserver", Server: true, DNSNames: apiDNS, IPs: apiIPs},
		{Name: "serving-kube-controller-manager", CA: c.ServerCA, CN: "kube-controller-manager", Server: true, DNSNames: []string{"localhost"}, IPs: local},
		{Name: "serving-kube-scheduler", CA: c.ServerCA, CN: "kube-scheduler", Server: true, DNSNames: []string{"localhost"}, IPs: local},
		{Name: "client-kube-apiserver", CA: c.ClientCA, CN: "system:kube-apiserver-kubelet-client", Client: true},
		{Name: "client-auth-proxy", CA: c.RequestHeaderCA, CN: "system:auth-proxy", Client: true},
		{Name: "etcd/client", CA: c.EtcdServerCA, CN: "etcd-client", Client: true},
		{Name: "etcd/server-client", CA: c.EtcdServerCA, CN: "etcd-server", Server: true, Client: true, DNSNames: etcdDNS, IPs: etcdIPs},
		{Name: "etcd/peer-server-client", CA: c.EtcdPeerCA, CN: "etcd-peer", Server: true, Client: true, DNSNames: etcdDNS, IPs: etcdIPs},
		{Name: "client-admin", CA: c.ClientCA, CN: "system:admin", Orgs: []string{"system:masters"}, Client: true},
		{Name: "client-controller", CA: c.ClientCA, CN: "system:kube-controller-manager", Client: true},
		{Name: "client-scheduler", CA: c.ClientCA, CN: "system:kube-scheduler", Client: true},
	}
	renewed, err := renewAll(dir, c.Leaves, force)
	return c, renewed, err
}

// renewAll ensures every leaf in dir, forcing those force selects, and
// returns the names of the leaves it reissued.
func renewAll(dir string, leaves []Leaf, force func(string) bool) ([]string, error) {
	var renewed []string
	for _, l := range leaves {
		did, err := l.Renew(dir, force != nil && force(l.Name))
		if err != nil {
			return renewed, err
		}
		if did {
			renewed = append(renewed, l.Name)
		}
	}
	return renewed, nil
}

// placeShared writes the cluster's shared files into a new TLS folder, or
// checks that an existing one holds the same CA.
func placeShared(dir string, first bool, shared map[string][]byte) error {
	if !first {
		have, err := os.ReadFile(filepath.Join(dir, "server-ca.crt"))
		if err != nil || !bytes.Equal(have, shared["server-ca.crt"]) {
			return fmt.Errorf("%s holds the certificates of another cluster: a server joins a cluster with a new data dir", dir)
		}
		return nil
	}
	return WriteShared(dir, shared)
}

// ReadShared reads the cluster's shared files from a TLS folder.
func ReadShared(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, name := range SharedFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		files[name] = data
	}
	for _, name := range OptionalShared {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			files[name] = data
		}
	}
	return files, nil
}

// WriteShared writes the cluster's shared files (all of SharedFiles) into
// a TLS folder, keys mode 0600.
func WriteShared(dir string, shared map[string][]byte) error {
	for _, name := range append(slices.Clone(SharedFiles), OptionalShared...) {
		data, ok := shared[name]
		if !ok && slices.Contains(OptionalShared, name) {
			continue
		}
		if !ok {
			return fmt.Errorf("the cluster's shared files lack %s", name)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") || slices.Contains(OptionalShared, name) {
			mode = 0o600
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, mode); err != nil {
			return err
		}
	}
	return nil
}

func dedupStrings(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func dedupIPs(in []net.IP) []net.IP {
	seen := map[string]bool{}
	var out []net.IP
	for _, ip := range in {
		if ip == nil || seen[ip.String()] {
			continue
		}
		seen[ip.String()] = true
		out = append(out, ip)
	}
	return out
}
