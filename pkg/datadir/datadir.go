// Package datadir names every path distro uses under --data-dir, in one
// place.
package datadir

import "path/filepath"

// Run is the folder of distro's runtime state outside --data-dir (sockets
// and containerd's state); distro-killall.sh removes it.
const Run = "/run/distro"

// Server holds the paths of the control plane's state.
type Server struct {
	Root      string // <data-dir>/server
	TLS       string // certificates and keys
	Cred      string // kubeconfigs of the control-plane components
	Token     string // the join token
	EtcdData  string // embedded etcd's data
	Snapshots string // etcd snapshots (default of --etcd-snapshot-dir)
	Manifests string // auto-deployed manifests
	// EncryptionConfig is the apiserver's EncryptionConfiguration for
	// Secrets (keys, 0600), in the TLS folder: shared by every server.
	EncryptionConfig string
	AuditPolicy      string // distro's default audit policy, written at start
	// SchedulerConfig is the kube-scheduler's KubeSchedulerConfiguration,
	// written at each start (unless one is given).
	SchedulerConfig string
	AuditLog        string
}

// EncryptionConfigName is the EncryptionConfiguration's file name in the
// TLS folder.
const EncryptionConfigName = "encryption-config.json"

// NewServer returns the server paths under dataDir.
func NewServer(dataDir string) Server {
	root := filepath.Join(dataDir, "server")
	return Server{
		Root:      root,
		TLS:       filepath.Join(root, "tls"),
		Cred:      filepath.Join(root, "cred"),
		Token:     filepath.Join(root, "token"),
		EtcdData:  filepath.Join(root, "db", "etcd"),
		Snapshots: filepath.Join(root, "db", "snapshots"),
		Manifests: filepath.Join(root, "manifests"),

		EncryptionConfig: filepath.Join(root, "tls", EncryptionConfigName),
		AuditPolicy:      filepath.Join(root, "etc", "audit-policy.yaml"),
		SchedulerConfig:  filepath.Join(root, "etc", "kube-scheduler.yaml"),
		AuditLog:         filepath.Join(root, "logs", "audit.log"),
	}
}

// Storage is where the local-path add-on keeps volumes on each node.
func Storage(dataDir string) string { return filepath.Join(dataDir, "storage") }

// Kubeconfig returns the path of a component's kubeconfig.
func (s Server) Kubeconfig(component string) string {
	return filepath.Join(s.Cred, component+".kubeconfig")
}

// File returns a path in the TLS folder.
func (s Server) File(name string) string { return filepath.Join(s.TLS, name) }

// Agent holds the paths of the node side, shared by server and agent.
type Agent struct {
	Root           string // <data-dir>/agent
	Containerd     string // containerd's root
	ContainerdRun  string // containerd's state and socket
	Socket         string
	Images         string // image tarballs imported at start (airgap)
	ImportRecord   string // what the image import stored, by tarball
	CNIConf        string
	Etc            string // generated configs
	Cred           string // node kubeconfigs and certificates
	ContainerdLogs string
}

// NewAgent returns the node paths under dataDir.
func NewAgent(dataDir string) Agent {
	root := filepath.Join(dataDir, "agent")
	run := filepath.Join(Run, "containerd")
	return Agent{
		Root:           root,
		Containerd:     filepath.Join(root, "containerd"),
		ContainerdRun:  run,
		Socket:         filepath.Join(run, "containerd.sock"),
		Images:         filepath.Join(root, "images"),
		ImportRecord:   filepath.Join(root, "containerd", "distro-imported-images.json"),
		CNIConf:        filepath.Join(root, "etc", "cni", "net.d"),
		Etc:            filepath.Join(root, "etc"),
		Cred:           filepath.Join(root, "cred"),
		ContainerdLogs: filepath.Join(root, "containerd", "containerd.log"),
	}
}
