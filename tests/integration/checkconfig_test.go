package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"distro/pkg/checkconfig"
)

// checkConfigRootEnv points distro's host checks at another root (tests only).
const checkConfigRootEnv = "DISTRO_CHECK_CONFIG_ROOT"

var summaryLine = regexp.MustCompile(`^check-config: (\d+) ok, (\d+) warnings, (\d+) missing$`)

// runDistro runs the binary with extra environment and returns its output
// and exit error.
func runDistro(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, distroBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fakeRoot returns a tree that shows this host (top-level folders as
// symlinks, /proc as symlinks to its entries) except that the kernel has
// no overlay filesystem: /proc/filesystems without it, no /proc/config.gz.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := checkconfig.MirrorHost(root, "filesystems", "config.gz"); err != nil {
		t.Fatal(err)
	}
	proc := filepath.Join(root, "proc")
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(string(fs), "\n") {
		if !strings.Contains(line, "overlay") {
			keep = append(keep, line)
		}
	}
	if err := os.WriteFile(filepath.Join(proc, "filesystems"), []byte(strings.Join(keep, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestCheckConfig runs `distro check-config` on this host (everything
// needed is there), against a tree whose kernel lacks overlayfs, and checks
// that server and agent refuse to start with the same line.
func TestCheckConfig(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, nil, 0o600)

	for _, args := range [][]string{
		{"check-config", "--config", cfg},
		{"check-config", "agent", "--config", cfg},
		{"check-config", "--config", cfg, "--disable-agent"},
	} {
		out, err := runDistro(t, nil, args...)
		m := summaryLine.FindStringSubmatch(lastLine(out))
		if err != nil || m == nil || m[3] != "0" {
			t.Errorf("distro %v: %v\n%s", args, err, out)
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "missing") {
				t.Errorf("distro %v: %s", args, line)
			}
		}
		for _, want := range []string{"overlayfs", "port 6443 (--https-listen-port)", "tool iptables", "cgroup memory"} {
			if args[1] == "agent" && strings.HasPrefix(want, "port 6443") {
				want = "port 6444 (--lb-server-port)"
			}
			if args[len(args)-1] == "--disable-agent" && !strings.HasPrefix(want, "port") {
				if strings.Contains(out, want) {
					t.Errorf("control plane only, yet checks %s:\n%s", want, out)
				}
				continue
			}
			if !regexp.MustCompile(`(?m)^ok +` + regexp.QuoteMeta(want)).MatchString(out) {
				t.Errorf("distro %v: no ok line for %s:\n%s", args, want, out)
			}
		}
		if args[1] != "agent" && args[len(args)-1] != "--disable-agent" {
			t.Logf("distro check-config on this host:\n%s", out)
		}
	}

	// A port in use, and the configured ports are the ones checked.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	out, err := runDistro(t, nil, "check-config", "--config", cfg, "--bind-address", "127.0.0.1", "--https-listen-port", busyPort)
	if err == nil || !regexp.MustCompile(`(?m)^missing +port `+busyPort+` \(--https-listen-port\) +already in use`).MatchString(out) {
		t.Errorf("port in use: %v\n%s", err, out)
	}
	out, err = runDistro(t, nil, "check-config", "agent", "--config", cfg, "--lb-server-port", "0")
	if err == nil || lastLine(out) != "distro: --lb-server-port 0 is not a port number (1-65535)" {
		t.Errorf("bad port: %v\n%s", err, out)
	}

	// The kernel made to lack overlayfs.
	root := fakeRoot(t)
	env := []string{checkConfigRootEnv + "=" + root}
	out, err = runDistro(t, env, "check-config", "--config", cfg)
	missingOverlay := regexp.MustCompile(`(?m)^missing +overlayfs +not in the running kernel`)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !missingOverlay.MatchString(out) {
		t.Errorf("no overlayfs: %v\n%s", err, out)
	}
	if m := summaryLine.FindStringSubmatch(lastLine(out)); m == nil || m[3] == "0" {
		t.Errorf("no overlayfs: summary %q", lastLine(out))
	}

	// Server and agent refuse to start with that line, before writing
	// anything.
	data := filepath.Join(dir, "data")
	for _, args := range [][]string{
		{"server", "--config", cfg, "--data-dir", data, "--write-kubeconfig", filepath.Join(dir, "kubeconfig.yaml"),
			"--https-listen-port", strconv.Itoa(freePort(t)), "--etcd-client-port", strconv.Itoa(freePort(t)), "--etcd-peer-port", strconv.Itoa(freePort(t))},
		{"agent", "--config", cfg, "--data-dir", data, "--server", "https://127.0.0.1:1",
			"--token", "K10" + strings.Repeat("f", 64) + "::server:secret", "--lb-server-port", strconv.Itoa(freePort(t))},
	} {
		out, err := runDistro(t, env, args...)
		if err == nil || !strings.HasPrefix(lastLine(out), "distro: overlayfs: not in the running kernel") {
			t.Errorf("%s without overlayfs: %v\n%s", args[0], err, out)
		}
		if _, err := os.Stat(data); err == nil {
			t.Errorf("%s wrote %s before refusing to start", args[0], data)
		}
		if _, err := os.Stat(filepath.Join(dir, "kubeconfig.yaml")); err == nil {
			t.Errorf("%s wrote a kubeconfig before refusing to start", args[0])
		}
	}
}
