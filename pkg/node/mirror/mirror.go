// Package mirror is distro's embedded registry mirror: every node serves
// the images in its own containerd store through a read-only subset of the
// OCI distribution API (manifests by tag and by digest, blobs by digest),
// and every node's containerd uses itself and the other nodes as mirrors,
// so an image imported on one node runs on every node with any pull
// policy, offline. Peers are the cluster's Ready nodes (InternalIP from the
// API). Only nodes may read: mutual TLS, the client certificate signed by
// the cluster's client CA with the system:nodes organisation.
package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"distro/pkg/kubeclient"
	"distro/pkg/node/containerd"
)

// DefaultPort is where every node's mirror listens.
const DefaultPort = 6543

// Mirror is the embedded registry mirror component.
type Mirror struct {
	NodeName string
	Port     int
	Socket   string // containerd's
	// ServingCert and ServingKey are re-read at every handshake (renewed
	// while running); ClientCA verifies the peers.
	ServingCert, ServingKey, ClientCA string
	Client                            kubernetes.Interface

	mu    sync.Mutex
	peers []string // other nodes' endpoints, sorted
	store *client.Client
}

func (m *Mirror) Name() string { return "registry mirror" }

// Endpoint is a node's mirror URL.
func Endpoint(ip string, port int) string {
	return "https://" + net.JoinHostPort(ip, strconv.Itoa(port))
}

// Peers returns the mirror endpoints of the other Ready nodes.
func (m *Mirror) Peers() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.peers)
}

// Run serves until ctx ends, following the cluster's nodes.
func (m *Mirror) Run(ctx context.Context, ready func()) error {
	caPEM, err := os.ReadFile(m.ClientCA)
	if err != nil {
		return fmt.Errorf("registry mirror: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("registry mirror: no certificate in %s", m.ClientCA)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", m.Port))
	if err != nil {
		return fmt.Errorf("registry mirror: %w (set --disable-embedded-registry, or free the port)", err)
	}
	srv := &http.Server{
		Handler:           m,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			ClientAuth: tls.VerifyClientCertIfGiven,
			ClientCAs:  pool,
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				c, err := tls.LoadX509KeyPair(m.ServingCert, m.ServingKey)
				return &c, err
			},
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	go m.followNodes(ctx)
	klog.Infof("registry mirror: serving this node's images to the cluster's nodes on :%d", m.Port)
	ready()
	select {
	case err := <-errc:
		return fmt.Errorf("registry mirror: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		m.mu.Lock()
		if m.store != nil {
			m.store.Close()
		}
		m.mu.Unlock()
		return nil
	}
}

// followNodes keeps the peers in step with the cluster's Ready nodes
// through a watch: an informer that holds only the name, InternalIP and
// Ready condition of each node. (A LIST of every node every 10 s from
// every node of a 1,000-node cluster would be 100 full LISTs a second for
// the apiserver.)
func (m *Mirror) followNodes(ctx context.Context) {
	nodes := kubeclient.WatchNodes(ctx, m.Client, slimNode)
	defer nodes.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-nodes.Changed:
		}
		var peers []string
		for _, n := range nodes.List() {
			if n.Name == m.NodeName || !ready(n) {
				continue
			}
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					peers = append(peers, Endpoint(a.Address, m.Port))
					break
				}
			}
		}
		slices.Sort(peers)
		m.mu.Lock()
		if !slices.Equal(peers, m.peers) {
			m.peers = peers
			klog.Infof("registry mirror: peers %v", peers)
		}
		m.mu.Unlock()
	}
}

// slimNode is what the mirror's informer keeps of a node: its name, its
// first InternalIP and its Ready condition.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a deleted node's tombstone
	}
	s := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion}}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			s.Status.Addresses = []corev1.NodeAddress{a}
			break
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			s.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return s, nil
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (m *Mirror) client() (*client.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.store == nil {
		c, err := containerd.New(m.Socket)
		if err != nil {
			return nil, err
		}
		m.store = c
	}
	return m.store, nil
}

// ServeHTTP answers GET and HEAD of /v2/, /v2/<name>/manifests/<ref> and
// /v2/<name>/blobs/<digest>, to nodes only.
func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isNode(r) {
		http.Error(w, "a node's client certificate is required", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "read-only mirror", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	path := strings.TrimPrefix(r.URL.Path, "/v2/")
	if path == "" || r.URL.Path == "/v2" {
		w.WriteHeader(http.StatusOK)
		return
	}
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(path, k); i > 0 {
			repo, kind, ref = path[:i], strings.Trim(k, "/"), path[i+len(k):]
			break
		}
	}
	if repo == "" || ref == "" {
		http.NotFound(w, r)
		return
	}
	c, err := m.client()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	ctx := r.Context()
	var desc struct {
		digest    digest.Digest
		mediaType string
	}
	if d, err := digest.Parse(ref); err == nil {
		desc.digest = d
	} else if kind == "manifests" {
		img, err := c.ImageService().Get(ctx, imageName(r.URL.Query().Get("ns"), repo, ref))
		if err != nil {
			notFoundOr(w, r, err)
			return
		}
		desc.digest, desc.mediaType = img.Target.Digest, img.Target.MediaType
	} else {
		http.NotFound(w, r)
		return
	}
	cs := c.ContentStore()
	info, err := cs.Info(ctx, desc.digest)
	if err != nil {
		notFoundOr(w, r, err)
		return
	}
	ra, err := cs.ReaderAt(ctx, ocispecDesc(desc.digest, info.Size))
	if err != nil {
		notFoundOr(w, r, err)
		return
	}
	defer ra.Close()
	if kind == "manifests" {
		if desc.mediaType == "" {
			desc.mediaType = sniffMediaType(io.NewSectionReader(ra, 0, min(info.Size, 1<<20)))
		}
		w.Header().Set("Content-Type", desc.mediaType)
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Docker-Content-Digest", desc.digest.String())
	w.Header().Set("Etag", `"`+desc.digest.String()+`"`)
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(ra, 0, info.Size))
}

// isNode says whether the request carries a verified node certificate.
func isNode(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false
	}
	leaf := r.TLS.VerifiedChains[0][0]
	return strings.HasPrefix(leaf.Subject.CommonName, "system:node:") && slices.Contains(leaf.Subject.Organization, "system:nodes")
}

// imageName is the containerd image name a mirror request asks for: ns is
// the registry containerd would have contacted (docker.io's official
// images live under library/).
func imageName(ns, repo, tag string) string {
	if ns == "" {
		ns = "docker.io"
	}
	if ns == "docker.io" && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return ns + "/" + repo + ":" + tag
}

func notFoundOr(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errdefs.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// sniffMediaType reads a manifest's own mediaType field (OCI and Docker
// manifests and indexes carry one); without it, an OCI manifest or index by
// its shape.
func sniffMediaType(r io.Reader) string {
	var m struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	if json.NewDecoder(r).Decode(&m) == nil && m.MediaType != "" {
		return m.MediaType
	}
	if len(m.Manifests) > 0 {
		return "application/vnd.oci.image.index.v1+json"
	}
	return "application/vnd.oci.image.manifest.v1+json"
}

func ocispecDesc(d digest.Digest, size int64) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: d, Size: size}
}
