package pki

import (
	"net"
)

// NodeCerts are a node's kubelet credentials, in PEM.
type NodeCerts struct {
	ClientCert, ClientKey   []byte // CN system:node:<name>, O system:nodes
	ServingCert, ServingKey []byte // kubelet's HTTPS endpoint
}

// NodeLeaves are the kubelet's client and serving certificates of a node.
func NodeLeaves(serverCA, clientCA *CA, name string, ips []net.IP) (client, serving Leaf) {
	client = Leaf{Name: "kubelet-client", CA: clientCA, CN: "system:node:" + name, Orgs: []string{"system:nodes"}, Client: true}
	serving = Leaf{Name: "kubelet-serving", CA: serverCA, CN: name, Server: true,
		DNSNames: dedupStrings([]string{name, "localhost"}), IPs: dedupIPs(append([]net.IP{net.ParseIP("127.0.0.1")}, ips...))}
	return client, serving
}

// EnsureNode issues (or keeps) a node's kubelet client and serving
// certificates under dir.
func EnsureNode(dir string, serverCA, clientCA *CA, name string, ips []net.IP) (*NodeCerts, error) {
	var nc NodeCerts
	var err error
	client, serving := NodeLeaves(serverCA, clientCA, name, ips)
	if nc.ClientCert, nc.ClientKey, err = client.Ensure(dir); err != nil {
		return nil, err
	}
	if nc.ServingCert, nc.ServingKey, err = serving.Ensure(dir); err != nil {
		return nil, err
	}
	return &nc, nil
}
