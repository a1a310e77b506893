// Package join is how agents join a cluster: the server's handlers, served
// in front of the apiserver on its own port, and the agent's client. The
// agent pins the server CA with the hash in its K10 token before it sends
// the token's secret; a per-node password keeps a second host from taking
// over an existing node's name.
package join

const (
	// CACertsPath serves the server CA bundle, unauthenticated.
	CACertsPath = "/cacerts"
	// NodePath issues a node's credentials and the cluster settings.
	NodePath = "/v1-distro/node"
	// ServerPath admits a new server: its etcd member, the shared CA files.
	ServerPath = "/v1-distro/server"

	headerNodeName     = "Distro-Node-Name"
	headerNodePassword = "Distro-Node-Password"
	headerNodeIP       = "Distro-Node-Ip"
)

// NodeConfig is what an agent receives: its credentials (PEM) and the
// cluster settings the node needs.
type NodeConfig struct {
	ServerCA string `json:"serverCA"`
	ClientCA string `json:"clientCA"`

	KubeletCert        string `json:"kubeletCert"`
	KubeletKey         string `json:"kubeletKey"`
	KubeletServingCert string `json:"kubeletServingCert"`
	KubeletServingKey  string `json:"kubeletServingKey"`
	KubeProxyCert      string `json:"kubeProxyCert"`
	KubeProxyKey       string `json:"kubeProxyKey"`
	FlannelCert        string `json:"flannelCert"`
	FlannelKey         string `json:"flannelKey"`

	ClusterCIDR    string `json:"clusterCIDR"`
	ServiceCIDR    string `json:"serviceCIDR"`
	ClusterDNS     string `json:"clusterDNS"`
	ClusterDomain  string `json:"clusterDomain"`
	FlannelBackend string `json:"flannelBackend"`
}

// ServerJoinRequest is what a joining server sends: its etcd member and the
// settings that must be the same on every server (flag name → value).
type ServerJoinRequest struct {
	Name     string            `json:"name"`
	PeerURL  string            `json:"peerURL"`
	Settings map[string]string `json:"settings"`
}

// ServerJoinResponse is what a joining server receives: the cluster's
// shared files (pki.SharedFiles) and its etcd initial-cluster setting.
type ServerJoinResponse struct {
	Files          map[string][]byte `json:"files"`
	InitialCluster string            `json:"initialCluster"`
}
