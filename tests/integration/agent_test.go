package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agentRun runs `distro agent` to completion and returns its output.
func agentRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, distroBin(t), append([]string{"agent"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestAgentJoins starts a control plane without a node and joins this host
// as a worker with `distro agent`.
func TestAgentJoins(t *testing.T) {
	requireRoot(t)
	s := NewServer(t, "--disable-agent")
	s.Start()
	tokenBytes, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenBytes))
	server := "https://127.0.0.1:" + strconv.Itoa(s.Port)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, nil, 0o600)

	// A wrong secret and a foreign CA hash are refused before any node exists.
	wrongSecret := token[:strings.LastIndex(token, ":")+1] + "not-the-secret"
	if out, err := agentRun(t, "--config", cfg, "--server", server, "--token", wrongSecret, "--data-dir", filepath.Join(dir, "bad1"), "--node-name", "intruder"); err == nil || !strings.Contains(out, "rejected the token") {
		t.Errorf("wrong token: err=%v\n%s", err, out)
	}
	foreign := "K10" + strings.Repeat("f", 64) + token[strings.Index(token, "::"):]
	if out, err := agentRun(t, "--config", cfg, "--server", server, "--token", foreign, "--data-dir", filepath.Join(dir, "bad2"), "--node-name", "intruder"); err == nil || !strings.Contains(out, "does not match the CA hash in the token") {
		t.Errorf("foreign CA hash: err=%v\n%s", err, out)
	}
	if out, _ := s.Kubectl("get", "node", "intruder"); !strings.Contains(out, "NotFound") {
		t.Errorf("a refused agent left a node: %s", out)
	}

	// The real join.
	agentDir := filepath.Join(dir, "agent")
	withTestImage(t, agentDir)
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	cmd := exec.Command(distroBin(t), "agent", "--config", cfg, "--server", server, "--token-file", tokenFile, "--data-dir", agentDir, "--node-name", "worker-1", "--node-label", "tier=test",
		// A verbosity for one component is the process's: the kubelet and
		// kube-proxy share one logger (kube-proxy used to stop the agent
		// when its verbosity differed from the kubelet's).
		"--kubelet-arg", "v=2")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
		pw.Close()
		if t.Failed() {
			mu.Lock()
			lines := strings.Split(log.String(), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			t.Logf("agent log tail:\n%s", strings.Join(lines, "\n"))
			mu.Unlock()
		}
	})
	Eventually(t, 2*time.Minute, "agent node Ready", func() error {
		out, err := s.Kubectl("get", "node", "worker-1", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return &textErr{out}
		}
		return nil
	})
	if out := s.MustKubectl("get", "node", "worker-1", "-o", "jsonpath={.metadata.labels.tier}"); out != "test" {
		t.Errorf("--node-label: tier=%q", out)
	}

	// A pod on the agent: logs and exec through the apiserver.
	s.MustKubectl("run", "p", "--image="+TestImage, "--image-pull-policy=Never", "--command", "--", "/bin/sh", "-c", "echo hello-from-agent; exec sleep 100000")
	s.MustKubectl("wait", "--for=condition=Ready", "pod/p", "--timeout=120s")
	// Ready does not wait for the container's output to reach its log file
	// (containerd copies it there), so the first read may come up empty.
	Eventually(t, 30*time.Second, "kubectl logs", func() error {
		if out, err := s.Kubectl("logs", "p"); err != nil || !strings.Contains(out, "hello-from-agent") {
			return fmt.Errorf("kubectl logs: %v: %q", err, out)
		}
		return nil
	})
	if out := s.MustKubectl("exec", "p", "--", "cat", "/proc/self/cgroup"); out == "" {
		t.Error("kubectl exec printed nothing")
	}

	checkCrictl(t, agentDir, "p", "hello-from-agent", []string{"echo", "exec-on-agent"}, "exec-on-agent")
	mu.Lock()
	verbose := strings.Contains(log.String(), "SyncLoop ADD") // the kubelet's, at v=2
	mu.Unlock()
	if !verbose {
		t.Error("--kubelet-arg v=2: the agent's log has no v=2 line of the kubelet (SyncLoop ADD)")
	}
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
		t.Errorf("the agent with --kubelet-arg v=2 has exited: %v %s", err, st)
	}

	// Another host cannot take over the node's name.
	if out, err := agentRun(t, "--config", cfg, "--server", server, "--token", token, "--data-dir", filepath.Join(dir, "other"), "--node-name", "worker-1"); err == nil || !strings.Contains(out, "node password rejected") {
		t.Errorf("name takeover: err=%v\n%s", err, out)
	}
}

type textErr struct{ s string }

func (e *textErr) Error() string { return "got " + e.s }
