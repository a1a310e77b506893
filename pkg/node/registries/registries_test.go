package registries

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestParse(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(ca, []byte("x"), 0o644)
	c, err := Parse([]byte(`
mirrors:
  docker.io:
    endpoint: ["https://mirror.example:5000", "http://10.0.0.1:5000/"]
  "*":
    endpoint: ["https://all.example"]
configs:
  mirror.example:5000:
    auth: {username: u, password: "p'\"w"}
    tls: {ca_file: ` + ca + `}
  registry.example.com:
    tls: {insecure_skip_verify: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	files := c.HostsFiles(nil)
	docker := string(files["docker.io"])
	for _, want := range []string{`server = "https://registry-1.docker.io"`, `[host."https://mirror.example:5000"]`, `ca = "` + ca + `"`, `[host."http://10.0.0.1:5000"]`} {
		if !strings.Contains(docker, want) {
			t.Errorf("docker.io hosts.toml lacks %s:\n%s", want, docker)
		}
	}
	if strings.Index(docker, "mirror.example") > strings.Index(docker, "10.0.0.1") {
		t.Errorf("mirrors out of order:\n%s", docker)
	}
	if !strings.Contains(string(files["_default"]), `[host."https://all.example"]`) {
		t.Errorf("_default: %s", files["_default"])
	}
	if !strings.Contains(string(files["registry.example.com"]), "skip_verify = true") {
		t.Errorf("registry.example.com: %s", files["registry.example.com"])
	}
	for name, data := range files {
		var v map[string]any
		if err := toml.Unmarshal(data, &v); err != nil {
			t.Errorf("%s: %v\n%s", name, err, data)
		}
	}
	// The credentials go into containerd's config, after its CRI image
	// table, as valid TOML with the password intact.
	reg, err := c.CRIRegistryTOML("/hosts")
	if err != nil {
		t.Fatal(err)
	}
	full := "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = \"overlayfs\"\n" + string(reg)
	var cfg struct {
		Plugins map[string]struct {
			Registry struct {
				ConfigPath string `toml:"config_path"`
				Configs    map[string]struct {
					Auth struct{ Username, Password string }
				}
			}
		}
	}
	if err := toml.Unmarshal([]byte(full), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, full)
	}
	r := cfg.Plugins["io.containerd.cri.v1.images"].Registry
	if r.ConfigPath != "/hosts" || r.Configs["mirror.example:5000"].Auth.Password != `p'"w` {
		t.Errorf("parsed back: %+v\n%s", r, full)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	for in, want := range map[string]string{
		"mirrors: {docker.io: {endpoints: [x]}}":                       "mirrors.docker.io.endpoints: unknown key",
		"mirrors: {docker.io: {endpoint: [\"ftp://x\"]}}":              "mirrors.docker.io.endpoint[0]",
		"mirrors: {docker.io: {endpoint: [\"mirror:5000\"]}}":          "mirrors.docker.io.endpoint[0]",
		"configs: {r.example: {tls: {ca_file: /nonexistent/ca.crt}}}":  "configs.r.example.tls.ca_file",
		"configs: {r.example: {auth: {user: x}}}":                      "configs.r.example.auth.user: unknown key",
		"configs: {r.example: {tls: {insecure_skip_verify: \"yes\"}}}": "configs.r.example.tls.insecure_skip_verify",
		"mirror: {}": "mirror: unknown key",
		"mirrors: {docker.io: {rewrite: {a: b}}}": "mirrors.docker.io.rewrite",
		"configs: {\"bad host/x\": {}}":           "configs.bad host/x",
		"mirrors: [1]":                            "mirrors: want a mapping",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", in, err, want)
		}
	}
	if _, err := Load("/nonexistent/registries.yaml", false); err != nil {
		t.Errorf("missing default file: %v", err)
	}
	if _, err := Load("/nonexistent/registries.yaml", true); err == nil {
		t.Error("a named file that is missing was accepted")
	}
}

func TestWriteHostsRemovesStale(t *testing.T) {
	dir := t.TempDir()
	a, _ := Parse([]byte(`mirrors: {a.example: {endpoint: ["https://m.example"]}, b.example: {endpoint: ["https://m.example"]}}`))
	if err := a.WriteHosts(dir, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := Parse([]byte(`mirrors: {b.example: {endpoint: ["https://m.example"]}}`))
	if err := b.WriteHosts(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.example")); !os.IsNotExist(err) {
		t.Errorf("a.example left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.example", "hosts.toml")); err != nil {
		t.Error(err)
	}
}

// The embedded mirrors come first for the registries they serve, with the
// node's client certificate; other registries are left alone.
func TestPeersFirst(t *testing.T) {
	c, err := Parse([]byte(`mirrors: {docker.io: {endpoint: ["https://m.example"]}, distro.test: {}}`))
	if err != nil {
		t.Fatal(err)
	}
	p := &Peers{Endpoints: []string{"https://127.0.0.1:6543", "https://10.0.0.2:6543"}, CA: "/ca", Cert: "/c", Key: "/k", Registries: c.Mirrored()}
	if got := strings.Join(p.Registries, " "); got != "distro.local distro.test docker.io registry.k8s.io" {
		t.Errorf("mirrored: %s", got)
	}
	files := c.HostsFiles(p)
	docker := string(files["docker.io"])
	self, peer, conf := strings.Index(docker, "127.0.0.1:6543"), strings.Index(docker, "10.0.0.2:6543"), strings.Index(docker, "m.example")
	if !(self > 0 && self < peer && peer < conf) || !strings.Contains(docker, `client = [["/c", "/k"]]`) {
		t.Errorf("docker.io:\n%s", docker)
	}
	if !strings.Contains(string(files["distro.test"]), "127.0.0.1:6543") || !strings.Contains(string(files["registry.k8s.io"]), "10.0.0.2:6543") {
		t.Errorf("files: %v", files)
	}
	for name, data := range files {
		var v map[string]any
		if err := toml.Unmarshal(data, &v); err != nil {
			t.Errorf("%s: %v\n%s", name, err, data)
		}
	}
}
