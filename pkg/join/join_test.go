package join

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"distro/pkg/pki"
	"distro/pkg/token"
)

// startJoinServer serves the join API over TLS with a certificate of the
// cluster's server CA, as the real server does on :6443.
func startJoinServer(t *testing.T, s *Server) string {
	t.Helper()
	serving := pki.NodeLeaves(s.Certs.ServerCA, s.Certs.ClientCA, "localhost", nil)[1]
	certPEM, keyPEM, err := serving.Issue()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Wrap(http.NotFoundHandler()))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func newJoinServer(t *testing.T) (*Server, *fake.Clientset) {
	t.Helper()
	certs, err := pki.EnsureServer(t.TempDir(), pki.ServerInput{
		Hostname: "server-1", NodeIPs: []net.IP{net.ParseIP("127.0.0.1")},
		ServiceIP: net.ParseIP("10.43.0.1"), ClusterDomain: "cluster.local",
	})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewSimpleClientset()
	return &Server{Certs: certs, Secret: "s3cret", Client: client,
		ClusterCIDR: "10.42.0.0/16", ServiceCIDR: "10.43.0.0/16", ClusterDNS: "10.43.0.10", ClusterDomain: "cluster.local"}, client
}

func joinToken(s *Server) token.Token {
	return token.Token{CAHash: pki.CAHash(pki.Bundle(s.Certs.ServerCA)), User: "server", Secret: s.Secret}
}

// A node that joins while the server's apiserver has not created
// kube-system yet is told to retry, and joins once it exists, instead of
// giving up for good.
func TestJoinRetriesWhileServerStarts(t *testing.T) {
	s, client := newJoinServer(t)
	var refused atomic.Int32
	client.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refused.Add(1) <= 2 {
			return true, nil, apierrors.NewNotFound(corev1.Resource("namespaces"), metav1.NamespaceSystem)
		}
		return false, nil, nil
	})
	url := startJoinServer(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &Client{Server: url, Token: joinToken(s), NodeName: "agent-1", NodePassword: "0123456789abcdef0123", NodeIPs: []string{"192.0.2.1"}}
	nc, err := c.Join(ctx)
	if err != nil {
		t.Fatalf("join while kube-system was missing: %v", err)
	}
	if refused.Load() < 3 {
		t.Fatalf("the join did not retry: %d create calls", refused.Load())
	}
	if nc.KubeletCert == "" || nc.ServiceCIDR != "10.43.0.0/16" {
		t.Fatalf("incomplete node config: %+v", nc)
	}
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, PasswordSecretName("agent-1"), metav1.GetOptions{}); err != nil {
		t.Fatalf("node password not stored: %v", err)
	}

	// The answer while not ready is a 503 with Retry-After, not a refusal.
	refused.Store(-100)
	req, _ := http.NewRequest(http.MethodPost, NodePath, nil)
	req.SetBasicAuth("server", s.Secret)
	req.Header.Set(headerNodeName, "agent-2")
	req.Header.Set(headerNodePassword, "0123456789abcdef0123")
	rec := httptest.NewRecorder()
	s.Wrap(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("not-ready answer: %d %q (Retry-After %q)", rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"))
	}
}

// A second host that takes a joined node's name with another password is
// refused at once, with a reason, and does not retry.
func TestJoinRefusesOtherHostWithSameName(t *testing.T) {
	s, _ := newJoinServer(t)
	url := startJoinServer(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := &Client{Server: url, Token: joinToken(s), NodeName: "agent-1", NodePassword: "0123456789abcdef0123"}
	if _, err := first.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Join(ctx); err != nil {
		t.Fatalf("the same node joining again: %v", err)
	}
	other := *first
	other.NodePassword = "fedcba9876543210fedc"
	start := time.Now()
	_, err := other.Join(ctx)
	if err == nil || !strings.Contains(err.Error(), "belongs to another host") {
		t.Fatalf("want a refusal naming the cause, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("a refusal was retried for %v", time.Since(start))
	}
	bad := *first
	bad.Token.Secret = "wrong"
	if _, err := bad.Join(ctx); err == nil || !strings.Contains(err.Error(), "rejected the token") {
		t.Fatalf("want a token rejection, got %v", err)
	}
}
