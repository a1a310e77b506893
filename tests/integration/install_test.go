package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestInstallScript installs into a scratch root (DESTDIR) as a server and
// as an agent, from the local binary: no download, as on an air-gapped host.
func TestInstallScript(t *testing.T) {
	script, _ := filepath.Abs("../../package/install.sh")
	for name, env := range map[string][]string{
		"server": nil,
		"agent":  {"DISTRO_URL=https://192.0.2.1:6443", "DISTRO_TOKEN=K10abc::server:secret"},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			cmd := exec.Command("sh", script)
			cmd.Env = append(append(os.Environ(), "DESTDIR="+root, "DISTRO_BIN="+distroBin(t)), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("install.sh: %v\n%s", err, out)
			}
			out, err := exec.Command(filepath.Join(root, "usr/local/bin/kubectl"), "version", "--client").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "v1.37.2") {
				t.Errorf("installed kubectl symlink: %v\n%s", err, out)
			}
			if _, err := os.Stat(filepath.Join(root, "usr/local/bin/distro-killall.sh")); err != nil {
				t.Error(err)
			}
			unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/distro.service"))
			if err != nil || !strings.Contains(string(unit), "ExecStart=/usr/local/bin/distro $DISTRO_EXEC") {
				t.Errorf("unit: %v\n%s", err, unit)
			}
			def, _ := os.ReadFile(filepath.Join(root, "etc/default/distro"))
			info, _ := os.Stat(filepath.Join(root, "etc/default/distro"))
			wantExec := `DISTRO_EXEC="server `
			if name == "agent" {
				wantExec = `DISTRO_EXEC="agent --server https://192.0.2.1:6443`
				if !strings.Contains(string(def), `DISTRO_TOKEN="K10abc::server:secret"`) || info.Mode().Perm() != 0o600 {
					t.Errorf("agent token not stored privately (mode %v):\n%s", info.Mode(), def)
				}
			}
			if !strings.Contains(string(def), wantExec) {
				t.Errorf("/etc/default/distro:\n%s\nwant %s", def, wantExec)
			}
		})
	}
}

// TestKillallScript runs distro-killall.sh for one data dir while other
// distro nodes run: one with another data dir, and one with the same data
// dir path in another mount namespace (as a node in a container has). Only
// the node of that data dir is stopped and its mounts removed; what the
// nodes share (cni0, the rules) stays while another node uses it.
func TestKillallScript(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is needed to run a node in another mount namespace")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, nil, 0o600)
	this, other := filepath.Join(dir, "this"), filepath.Join(dir, "other")

	// Mounts under each data dir (a container's rootfs, say).
	var mounted []string
	t.Cleanup(func() {
		for _, m := range mounted {
			exec.Command("umount", "-l", m).Run()
		}
	})
	for _, d := range []string{this, other} {
		m := filepath.Join(d, "agent", "containerd", "probe")
		os.MkdirAll(m, 0o755)
		if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", m).CombinedOutput(); err != nil {
			t.Fatalf("mount %s: %v\n%s", m, err, out)
		}
		mounted = append(mounted, m)
	}
	// A bridge named like the pod bridge, unless a node made one already.
	ownBridge := exec.Command("ip", "link", "add", "cni0", "type", "bridge").Run() == nil
	t.Cleanup(func() {
		if ownBridge {
			exec.Command("ip", "link", "delete", "cni0").Run()
		}
	})

	// Agents that keep retrying to join a server that is not there.
	type proc struct {
		cmd    *exec.Cmd
		exited chan struct{}
		log    *strings.Builder
	}
	start := func(name, dataDir string, prefix ...string) *proc {
		args := append(prefix, distroBin(t), "agent", "--config", cfg, "--data-dir", dataDir,
			"--server", "https://127.0.0.1:1", "--token", "K10"+strings.Repeat("f", 64)+"::server:secret",
			"--node-name", name, "--lb-server-port", strconv.Itoa(freePort(t)))
		p := &proc{cmd: exec.Command(args[0], args[1:]...), exited: make(chan struct{}), log: &strings.Builder{}}
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.cmd.Wait(); close(p.exited) }()
		t.Cleanup(func() {
			p.cmd.Process.Kill()
			<-p.exited
		})
		return p
	}
	mine := start("killall-this", this)
	otherDir := start("killall-other", other)
	otherNS := start("killall-container", this, "unshare", "--mount", "--propagation", "private")
	alive := func(p *proc) bool {
		select {
		case <-p.exited:
			return false
		default:
			return true
		}
	}
	time.Sleep(3 * time.Second) // past their start-up checks
	for name, p := range map[string]*proc{"this": mine, "other data dir": otherDir, "other mount namespace": otherNS} {
		if !alive(p) {
			t.Fatalf("agent (%s) exited early:\n%s", name, p.log)
		}
	}

	script, _ := filepath.Abs("../../package/distro-killall.sh")
	run := func(dataDir string) string {
		cmd := exec.Command("sh", script)
		cmd.Env = append(os.Environ(), "DISTRO_DATA_DIR="+dataDir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("distro-killall.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	isMounted := func(m string) bool {
		data, _ := os.ReadFile("/proc/self/mounts")
		return strings.Contains(string(data), " "+m+" ")
	}
	linkExists := func(name string) bool { return exec.Command("ip", "link", "show", name).Run() == nil }

	out := run(this)
	t.Logf("distro-killall.sh for %s while other nodes run:\n%s", this, out)
	select {
	case <-mine.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("the agent of %s still runs after distro-killall.sh:\n%s", this, out)
	}
	if !alive(otherDir) {
		t.Errorf("distro-killall.sh for %s stopped the agent of %s:\n%s", this, other, out)
	}
	if !alive(otherNS) {
		t.Errorf("distro-killall.sh for %s stopped the agent of the same data dir in another mount namespace:\n%s", this, out)
	}
	if isMounted(mounted[0]) {
		t.Errorf("%s still mounted after distro-killall.sh", mounted[0])
	}
	if !isMounted(mounted[1]) {
		t.Errorf("distro-killall.sh for %s unmounted %s", this, mounted[1])
	}
	if ownBridge && !linkExists("cni0") {
		t.Errorf("cni0 deleted while other nodes run in this network namespace:\n%s", out)
	}
	if !strings.Contains(out, "another distro node runs in this network namespace") {
		t.Errorf("distro-killall.sh does not say what it leaves:\n%s", out)
	}

	// Once no other node runs here, the shared things go too.
	for _, p := range []*proc{otherDir, otherNS} {
		p.cmd.Process.Kill()
		<-p.exited
	}
	out = run(other)
	t.Logf("distro-killall.sh for %s, no other node left:\n%s", other, out)
	if isMounted(mounted[1]) {
		t.Errorf("%s still mounted after distro-killall.sh for it", mounted[1])
	}
	if ownBridge && linkExists("cni0") {
		t.Errorf("cni0 left when no node runs:\n%s", out)
	}
}
