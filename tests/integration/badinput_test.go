package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadInput runs the real binary with each bad input and checks for one
// clear error line, a non-zero exit and nothing written to the data dir.
func TestBadInput(t *testing.T) {
	requireRoot(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	notADir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notADir, []byte("x"), 0o600)

	for _, tc := range []struct {
		name   string
		args   []string
		config string
		want   string
	}{
		{"port in use", []string{"--https-listen-port", strconv.Itoa(busyPort), "--bind-address", "127.0.0.1"}, "", "already in use"},
		{"unwritable data dir", []string{"--data-dir", filepath.Join(notADir, "data")}, "", "--data-dir"},
		{"invalid CIDR", []string{"--cluster-cidr", "10.42.0.0/99"}, "", "--cluster-cidr"},
		{"overlapping CIDRs", []string{"--cluster-cidr", "10.0.0.0/8"}, "", "overlap"},
		{"malformed config file", nil, "tls-san: [a\n", "not valid YAML"},
		{"unknown config key", nil, "colour: blue\n", `unknown key "colour"`},
		{"bad apiserver arg", []string{"--kube-apiserver-arg", "no-such-flag=1"}, "", "no-such-flag"},
		{"bad etcd arg", []string{"--etcd-arg", "no-such-setting=1"}, "", "no-such-setting"},
		{"missing resolv.conf", []string{"--resolv-conf", "/no/such/resolv.conf"}, "", "--resolv-conf"},
		{"unknown add-on", []string{"--disable", "coredns,traefik"}, "", `--disable "traefik": not a packaged add-on`},
		{"bad pprof address", []string{"--enable-pprof", "--pprof-address", "localhost"}, "", `--pprof-address "localhost": expected host:port`},
		{"pprof port in use", []string{"--enable-pprof", "--pprof-address", "127.0.0.1:" + strconv.Itoa(busyPort)}, "", "--pprof-address 127.0.0.1:" + strconv.Itoa(busyPort)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			cfg := filepath.Join(dir, "config.yaml")
			os.WriteFile(cfg, []byte(tc.config), 0o600)
			args := []string{"server", "--disable-agent", "--config", cfg, "--data-dir", data,
				"--write-kubeconfig", filepath.Join(dir, "kubeconfig.yaml"),
				"--https-listen-port", strconv.Itoa(freePort(t)), "--etcd-client-port", strconv.Itoa(freePort(t)), "--etcd-peer-port", strconv.Itoa(freePort(t))}
			args = append(args, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, distroBin(t), args...).CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0 for bad input; output:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "distro: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("last line %q does not name the problem (%q); output:\n%s", last, tc.want, out)
			}
			if entries, _ := os.ReadDir(data); len(entries) != 0 {
				t.Errorf("data dir not empty after a refused start: %v", entries)
			}
			if _, err := os.Stat(filepath.Join(dir, "kubeconfig.yaml")); err == nil {
				t.Error("kubeconfig written for a refused start")
			}
		})
	}
}
