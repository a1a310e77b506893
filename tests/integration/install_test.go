package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
