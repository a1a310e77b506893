// Package integration runs the real distro binary on this host (as root)
// against scratch data dirs.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// distroBin is the binary under test: $DISTRO_BIN, else bin/distro.
func distroBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DISTRO_BIN")
	if bin == "" {
		bin, _ = filepath.Abs("../../bin/distro")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("distro binary not found at %s (build it with make, or set DISTRO_BIN): %v", bin, err)
	}
	return bin
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests run distro as root (it binds ports, writes /var/lib-style state)")
	}
}

// freePort returns a TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Server is one running `distro server`.
type Server struct {
	t          *testing.T
	DataDir    string
	Kubeconfig string
	Port       int
	args       []string
	cmd        *exec.Cmd
	mu         sync.Mutex
	log        bytes.Buffer
	exited     chan struct{}
	exitErr    error
}

// NewServer prepares a server on a scratch data dir with free ports and an
// empty config file (so the host's /etc/distro/config.yaml is not read).
func NewServer(t *testing.T, extra ...string) *Server {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, DataDir: filepath.Join(dir, "data"), Kubeconfig: filepath.Join(dir, "kubeconfig.yaml"), Port: freePort(t)}
	s.args = append([]string{"server",
		"--config", cfg,
		"--data-dir", s.DataDir,
		"--write-kubeconfig", s.Kubeconfig,
		"--https-listen-port", fmt.Sprint(s.Port),
		"--etcd-client-port", fmt.Sprint(freePort(t)),
		"--etcd-peer-port", fmt.Sprint(freePort(t)),
	}, extra...)
	return s
}

// Start runs the server and waits for "control plane ready".
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	s.log.Reset()
	s.mu.Unlock()
	s.cmd = exec.Command(distroBin(s.t), s.args...)
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	s.exited = make(chan struct{})
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if strings.Contains(line, "control plane ready in") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() {
		s.exitErr = s.cmd.Wait()
		pw.Close()
		close(s.exited)
	}()
	s.t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				s.cmd.Process.Kill()
			}
		}
		if s.t.Failed() {
			s.t.Logf("server log tail:\n%s", s.Tail(60))
			f := filepath.Join(os.TempDir(), "distro-"+strings.ReplaceAll(s.t.Name(), "/", "_")+".log")
			if os.WriteFile(f, []byte(s.Log()), 0o644) == nil {
				s.t.Logf("whole server log: %s", f)
			}
		}
	})
	select {
	case <-ready:
	case <-s.exited:
		s.t.Fatalf("server exited before ready: %v\n%s", s.exitErr, s.Tail(40))
	case <-time.After(3 * time.Minute):
		s.t.Fatalf("server not ready after 3 minutes\n%s", s.Tail(40))
	}
}

// Stop sends SIGTERM and returns the exit error and how long it took.
func (s *Server) Stop() (error, time.Duration) {
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	return s.exitErr, time.Since(start)
}

// Log returns everything the server printed since its last start.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// Tail returns the last n lines of the log.
func (s *Server) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Kubectl runs `distro kubectl` with the server's admin kubeconfig (killed
// after 4 minutes, longer than any `kubectl wait --timeout` the tests use).
// It returns stdout, and stderr too when kubectl fails: discovery warnings
// (an aggregated API not ready yet) never mix into parsed output.
func (s *Server) Kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, distroBin(s.t), append([]string{"kubectl", "--kubeconfig", s.Kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// MustKubectl fails the test on error.
func (s *Server) MustKubectl(args ...string) string {
	s.t.Helper()
	out, err := s.Kubectl(args...)
	if err != nil {
		s.t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return out
}

// Eventually polls f until it returns nil or the timeout passes.
func Eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not done after %s: %v", what, timeout, err)
}
