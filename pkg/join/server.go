package join

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/pki"
)

// Server answers agents.
type Server struct {
	Certs  *pki.ServerCerts
	Secret string // the token secret
	Client kubernetes.Interface
	// Cluster settings handed to agents.
	ClusterCIDR, ServiceCIDR, ClusterDNS, ClusterDomain string

	// For joining servers: the TLS folder holding the shared files, the
	// settings a joiner must match, and how to add its etcd member (nil:
	// this server does not admit servers).
	TLSDir    string
	Settings  map[string]string
	AddMember func(ctx context.Context, name, peerURL string) (initialCluster string, err error)
}

// Wrap serves the join routes and passes every other request to next
// untouched.
func (s *Server) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case CACertsPath:
			w.Header().Set("Content-Type", "application/x-pem-file")
			w.Write(pki.Bundle(s.Certs.ServerCA))
		case NodePath:
			s.node(w, r)
		case ServerPath:
			s.server(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func fail(w http.ResponseWriter, code int, format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	http.Error(w, msg, code)
}

// authorized answers a request that is not a POST with the token's
// secret, and says whether the handler goes on.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "use POST")
		return false
	}
	user, secret, ok := r.BasicAuth()
	if !ok || user != "server" || subtle.ConstantTimeCompare([]byte(secret), []byte(s.Secret)) != 1 {
		fail(w, http.StatusUnauthorized, "token rejected")
		return false
	}
	return true
}

// server admits a new server: the settings that must match are compared,
// its etcd member is added as a learner, and it receives the shared files.
func (s *Server) server(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	if s.AddMember == nil {
		fail(w, http.StatusForbidden, "this server was not started with --cluster-init or --server: it does not admit other servers (restart it with --cluster-init)")
		return
	}
	var req ServerJoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "bad request: %v", err)
		return
	}
	if errs := validation.IsDNS1123Subdomain(req.Name); len(errs) > 0 {
		fail(w, http.StatusBadRequest, "server name %q: %s", req.Name, errs[0])
		return
	}
	if u, err := url.Parse(req.PeerURL); err != nil || u.Scheme != "https" || u.Port() == "" {
		fail(w, http.StatusBadRequest, "etcd peer URL %q: want https://<ip>:<port>", req.PeerURL)
		return
	}
	keys := make([]string, 0, len(s.Settings))
	for k := range s.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got := req.Settings[k]; got != s.Settings[k] {
			fail(w, http.StatusBadRequest, "critical configuration mismatch: %s is %q on this cluster and %q on the joining server", k, s.Settings[k], got)
			return
		}
	}
	files, err := pki.ReadShared(s.TLSDir)
	if err != nil {
		fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	initial, err := s.AddMember(r.Context(), req.Name, req.PeerURL)
	var final interface{ Permanent() bool }
	if errors.As(err, &final) && final.Permanent() {
		klog.Warningf("join: server %s (%s) refused: %v", req.Name, r.RemoteAddr, err)
		fail(w, http.StatusConflict, "%v", err)
		return
	}
	if err != nil {
		// Another server still joining, or etcd busy: the joiner retries.
		klog.Infof("join: server %s (%s) asked to retry: %v", req.Name, r.RemoteAddr, err)
		w.Header().Set("Retry-After", "2")
		fail(w, http.StatusServiceUnavailable, "cannot add the etcd member yet, retry later: %v", err)
		return
	}
	klog.Infof("join: admitted server %s (etcd peer %s) from %s", req.Name, req.PeerURL, r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ServerJoinResponse{Files: files, InitialCluster: initial})
}

func (s *Server) node(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	name := r.Header.Get(headerNodeName)
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		fail(w, http.StatusBadRequest, "node name %q: %s", name, errs[0])
		return
	}
	password := r.Header.Get(headerNodePassword)
	if len(password) < 16 {
		fail(w, http.StatusBadRequest, "node password missing")
		return
	}
	var ips []net.IP
	for _, a := range strings.Split(r.Header.Get(headerNodeIP), ",") {
		if ip := net.ParseIP(strings.TrimSpace(a)); ip != nil {
			ips = append(ips, ip)
		}
	}
	if err := s.checkNodePassword(r, name, password); err != nil {
		var mismatch passwordMismatch
		if errors.As(err, &mismatch) {
			klog.Warningf("join: node %s from %s refused: %v", name, r.RemoteAddr, err)
			fail(w, http.StatusForbidden, "%v", err)
			return
		}
		// The apiserver is still starting (kube-system may not exist
		// yet) or briefly unreachable: the node retries.
		klog.Infof("join: node %s from %s asked to retry: %v", name, r.RemoteAddr, err)
		w.Header().Set("Retry-After", "1")
		fail(w, http.StatusServiceUnavailable, "the server is not ready to admit nodes yet, retry later: %v", err)
		return
	}
	nc, err := s.issue(name, ips)
	if err != nil {
		fail(w, http.StatusInternalServerError, "issue credentials: %v", err)
		return
	}
	klog.Infof("join: issued credentials to node %s (%s)", name, r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(nc)
}

func (s *Server) issue(name string, ips []net.IP) (*NodeConfig, error) {
	c := s.Certs
	nc := &NodeConfig{
		ServerCA: string(c.ServerCA.PEM), ClientCA: string(c.ClientCA.PEM),
		ClusterCIDR: s.ClusterCIDR, ServiceCIDR: s.ServiceCIDR, ClusterDNS: s.ClusterDNS, ClusterDomain: s.ClusterDomain,
		FlannelBackend: "vxlan",
	}
	out := map[string][2]*string{
		pki.KubeletClient:  {&nc.KubeletCert, &nc.KubeletKey},
		pki.KubeletServing: {&nc.KubeletServingCert, &nc.KubeletServingKey},
		pki.KubeProxy:      {&nc.KubeProxyCert, &nc.KubeProxyKey},
		pki.Flannel:        {&nc.FlannelCert, &nc.FlannelKey},
	}
	for _, leaf := range pki.NodeLeaves(c.ServerCA, c.ClientCA, name, ips) {
		cert, key, err := leaf.Issue()
		if err != nil {
			return nil, err
		}
		*out[leaf.Name][0], *out[leaf.Name][1] = string(cert), string(key)
	}
	return nc, nil
}

// Leaves returns a NodeConfig's certificates by leaf name (cert, key PEM).
func (nc *NodeConfig) Leaves() map[string][2][]byte {
	return map[string][2][]byte{
		pki.KubeletClient:  {[]byte(nc.KubeletCert), []byte(nc.KubeletKey)},
		pki.KubeletServing: {[]byte(nc.KubeletServingCert), []byte(nc.KubeletServingKey)},
		pki.KubeProxy:      {[]byte(nc.KubeProxyCert), []byte(nc.KubeProxyKey)},
		pki.Flannel:        {[]byte(nc.FlannelCert), []byte(nc.FlannelKey)},
	}
}

// PasswordSecretName is the kube-system Secret holding a node's password
// hash.
func PasswordSecretName(node string) string { return node + ".node-password.distro" }

// checkNodePassword stores the hash of a new node's password, and refuses a
// known node whose password differs: another host is using its name.
func (s *Server) checkNodePassword(r *http.Request, name, password string) error {
	sum := sha256.Sum256([]byte(name + ":" + password))
	hash := hex.EncodeToString(sum[:])
	secrets := s.Client.CoreV1().Secrets(metav1.NamespaceSystem)
	sec, err := secrets.Get(r.Context(), PasswordSecretName(name), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = secrets.Create(r.Context(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: PasswordSecretName(name), Labels: map[string]string{"app.kubernetes.io/managed-by": "distro"}},
			Type:       "distro.io/node-password",
			Data:       map[string][]byte{"hash": []byte(hash)},
		}, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	if subtle.ConstantTimeCompare(sec.Data["hash"], []byte(hash)) != 1 {
		return passwordMismatch{fmt.Errorf("node password rejected: node name %q belongs to another host; if this host replaces it, delete the node and the secret kube-system/%s", name, PasswordSecretName(name))}
	}
	return nil
}

// passwordMismatch is the one answer of checkNodePassword that retrying
// cannot change; every other error is the apiserver not answering yet.
type passwordMismatch struct{ error }
