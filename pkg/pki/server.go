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

// ServerCerts are the CAs and the client credentials the server embeds in
// kubeconfigs. File paths follow the names listed in EnsureServer.
type ServerCerts struct {
	ServerCA, ClientCA, RequestHeaderCA, EtcdServerCA, EtcdPeerCA *CA
	// Client certificate and key PEM per kubeconfig user: admin,
	// controller, scheduler, kube-proxy, flannel.
	Clients map[string][2][]byte
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
	certs, err := ensureServer(work, in)
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

func ensureServer(dir string, in ServerInput) (*ServerCerts, error) {
	c := &ServerCerts{Clients: map[string][2][]byte{}}
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
			return nil, err
		}
	}
	if err := EnsureKey(filepath.Join(dir, "service.key")); err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	apiDNS, apiIPs := in.APIServerSANs()
	local := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	etcdIPs := dedupIPs(append(local, in.NodeIPs...))
	etcdDNS := dedupStrings([]string{"localhost", in.Hostname})
	leaves := []Leaf{
		{Name: "serving-kube-apiserver", CA: c.ServerCA, CN: "kube-apiserver", Server: true, DNSNames: apiDNS, IPs: apiIPs},
		{Name: "serving-kube-controller-manager", CA: c.ServerCA, CN: "kube-controller-manager", Server: true, DNSNames: []string{"localhost"}, IPs: local},
		{Name: "serving-kube-scheduler", CA: c.ServerCA, CN: "kube-scheduler", Server: true, DNSNames: []string{"localhost"}, IPs: local},
		{Name: "client-kube-apiserver", CA: c.ClientCA, CN: "system:kube-apiserver-kubelet-client", Client: true},
		{Name: "client-auth-proxy", CA: c.RequestHeaderCA, CN: "system:auth-proxy", Client: true},
		{Name: "etcd/client", CA: c.EtcdServerCA, CN: "etcd-client", Client: true},
		{Name: "etcd/server-client", CA: c.EtcdServerCA, CN: "etcd-server", Server: true, Client: true, DNSNames: etcdDNS, IPs: etcdIPs},
		{Name: "etcd/peer-server-client", CA: c.EtcdPeerCA, CN: "etcd-peer", Server: true, Client: true, DNSNames: etcdDNS, IPs: etcdIPs},
	}
	clients := map[string]Leaf{
		"admin":      {Name: "client-admin", CA: c.ClientCA, CN: "system:admin", Orgs: []string{"system:masters"}, Client: true},
		"controller": {Name: "client-controller", CA: c.ClientCA, CN: "system:kube-controller-manager", Client: true},
		"scheduler":  {Name: "client-scheduler", CA: c.ClientCA, CN: "system:kube-scheduler", Client: true},
		"kube-proxy": {Name: "client-kube-proxy", CA: c.ClientCA, CN: "system:kube-proxy", Client: true},
		"flannel":    {Name: "client-flannel", CA: c.ClientCA, CN: FlannelUser, Client: true},
	}
	for _, l := range leaves {
		if _, _, err := l.Ensure(dir); err != nil {
			return nil, err
		}
	}
	for user, l := range clients {
		certPEM, keyPEM, err := l.Ensure(dir)
		if err != nil {
			return nil, err
		}
		c.Clients[user] = [2][]byte{certPEM, keyPEM}
	}
	return c, nil
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
