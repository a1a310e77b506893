package pki

import (
	"net"
)

// Node leaf names, the same on servers and agents: <cred dir>/<name>.crt
// and .key.
const (
	KubeletClient  = "kubelet-client"
	KubeletServing = "kubelet-serving"
	KubeProxy      = "kube-proxy"
	Flannel        = "flannel"
)

// NodeLeaves are a node's certificates: the kubelet's client and serving
// certificates, and kube-proxy's and flannel's client certificates (the
// same identity on every node, a key of its own on each).
func NodeLeaves(serverCA, clientCA *CA, name string, ips []net.IP) []Leaf {
	return []Leaf{
		{Name: KubeletClient, CA: clientCA, CN: "system:node:" + name, Orgs: []string{"system:nodes"}, Client: true},
		{Name: KubeletServing, CA: serverCA, CN: name, Server: true,
			DNSNames: dedupStrings([]string{name, "localhost"}), IPs: dedupIPs(append([]net.IP{net.ParseIP("127.0.0.1")}, ips...))},
		{Name: KubeProxy, CA: clientCA, CN: "system:kube-proxy", Client: true},
		{Name: Flannel, CA: clientCA, CN: FlannelUser, Client: true},
	}
}

// EnsureNode issues (or keeps) a server's own node certificates under dir,
// reissuing those that are stale or that force selects; it returns the
// names it reissued.
func EnsureNode(dir string, serverCA, clientCA *CA, name string, ips []net.IP, force func(string) bool) ([]string, error) {
	return renewAll(dir, NodeLeaves(serverCA, clientCA, name, ips), force)
}
