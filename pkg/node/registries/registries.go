// Package registries reads registries.yaml (the k3s format: mirrors and
// per-host configs) and turns it into containerd's registry configuration:
// one hosts.toml per registry under containerd's config_path (read at every
// pull, so a change needs no restart) and the CRI plugin's per-host
// credentials.
package registries

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"sigs.k8s.io/yaml"

	"distro/pkg/fsutil"
)

// DefaultPath is where distro looks for registries.yaml.
const DefaultPath = "/etc/distro/registries.yaml"

// Config is a parsed registries.yaml.
type Config struct {
	Mirrors map[string]Mirror
	Configs map[string]HostConfig
}

// Mirror lists the endpoints tried, in order, for a registry ("*": every
// registry without a mirror of its own).
type Mirror struct {
	Endpoints []string
}

// HostConfig is how to talk to one registry host (host[:port]).
type HostConfig struct {
	Username, Password, Auth, IdentityToken string
	CAFile, CertFile, KeyFile               string
	InsecureSkipVerify                      bool
}

// HasAuth says whether credentials are set.
func (h HostConfig) HasAuth() bool {
	return h.Username != "" || h.Password != "" || h.Auth != "" || h.IdentityToken != ""
}

// Load reads and checks path. A missing file is an empty Config unless
// required (the operator named it).
func Load(path string, required bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) && !required {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registries config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("registries config %s: %w", path, err)
	}
	return c, nil
}

// Parse checks a registries.yaml: an unknown key, a malformed endpoint URL
// or a TLS file that cannot be read is an error naming the key.
func Parse(data []byte) (*Config, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not valid YAML: %v", err)
	}
	c := &Config{Mirrors: map[string]Mirror{}, Configs: map[string]HostConfig{}}
	for key, v := range raw {
		switch key {
		case "mirrors":
			m, err := object("mirrors", v)
			if err != nil {
				return nil, err
			}
			for reg, mv := range m {
				path := "mirrors." + reg
				if err := checkHost(path, reg, true); err != nil {
					return nil, err
				}
				mm, err := object(path, mv)
				if err != nil {
					return nil, err
				}
				var mirror Mirror
				for k, v := range mm {
					switch k {
					case "endpoint":
						list, ok := v.([]any)
						if !ok {
							return nil, fmt.Errorf("%s.endpoint: want a list of URLs", path)
						}
						for i, e := range list {
							s, ok := e.(string)
							u, err := url.Parse(s)
							if !ok || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
								return nil, fmt.Errorf("%s.endpoint[%d]: %v is not a URL like https://mirror.example:5000", path, i, e)
							}
							mirror.Endpoints = append(mirror.Endpoints, strings.TrimSuffix(s, "/"))
						}
					case "rewrite":
						return nil, fmt.Errorf("%s.rewrite: repository rewrites are not supported by distro's containerd; name the rewritten image in the pod instead", path)
					default:
						return nil, fmt.Errorf("%s.%s: unknown key (want endpoint)", path, k)
					}
				}
				c.Mirrors[reg] = mirror
			}
		case "configs":
			m, err := object("configs", v)
			if err != nil {
				return nil, err
			}
			for host, hv := range m {
				path := "configs." + host
				if err := checkHost(path, host, false); err != nil {
					return nil, err
				}
				hm, err := object(path, hv)
				if err != nil {
					return nil, err
				}
				hc, err := hostConfig(path, hm)
				if err != nil {
					return nil, err
				}
				c.Configs[host] = hc
			}
		default:
			return nil, fmt.Errorf("%s: unknown key (want mirrors or configs)", key)
		}
	}
	return c, nil
}

func hostConfig(path string, m map[string]any) (HostConfig, error) {
	var hc HostConfig
	for k, v := range m {
		sub, err := object(path+"."+k, v)
		if err != nil {
			return hc, err
		}
		switch k {
		case "auth":
			for ak, av := range sub {
				s, ok := av.(string)
				if !ok {
					return hc, fmt.Errorf("%s.auth.%s: want a string", path, ak)
				}
				switch ak {
				case "username":
					hc.Username = s
				case "password":
					hc.Password = s
				case "auth":
					if _, err := base64.StdEncoding.DecodeString(s); err != nil {
						return hc, fmt.Errorf("%s.auth.auth: not base64 of user:password", path)
					}
					hc.Auth = s
				case "identitytoken", "identity_token":
					hc.IdentityToken = s
				default:
					return hc, fmt.Errorf("%s.auth.%s: unknown key (want username, password, auth or identitytoken)", path, ak)
				}
			}
		case "tls":
			for tk, tv := range sub {
				key := path + ".tls." + tk
				switch tk {
				case "ca_file", "cert_file", "key_file":
					s, ok := tv.(string)
					if !ok || s == "" {
						return hc, fmt.Errorf("%s: want a file path", key)
					}
					if _, err := os.ReadFile(s); err != nil {
						return hc, fmt.Errorf("%s: %v", key, err)
					}
					switch tk {
					case "ca_file":
						hc.CAFile = s
					case "cert_file":
						hc.CertFile = s
					default:
						hc.KeyFile = s
					}
				case "insecure_skip_verify":
					b, ok := tv.(bool)
					if !ok {
						return hc, fmt.Errorf("%s: want true or false", key)
					}
					hc.InsecureSkipVerify = b
				default:
					return hc, fmt.Errorf("%s: unknown key (want ca_file, cert_file, key_file or insecure_skip_verify)", key)
				}
			}
			if (hc.CertFile == "") != (hc.KeyFile == "") {
				return hc, fmt.Errorf("%s.tls: cert_file and key_file go together", path)
			}
		default:
			return hc, fmt.Errorf("%s.%s: unknown key (want auth or tls)", path, k)
		}
	}
	return hc, nil
}

func object(path string, v any) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a mapping", path)
	}
	return m, nil
}

// checkHost accepts host[:port] (and "*" for a mirror of every registry).
func checkHost(path, host string, wildcard bool) error {
	if wildcard && host == "*" {
		return nil
	}
	u, err := url.Parse("https://" + host)
	if err != nil || u.Host != host || host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("%s: %q is not a registry host like registry.example.com:5000", path, host)
	}
	return nil
}

// upstream is a registry's own endpoint (docker.io's is registry-1).
func upstream(registry string) string {
	if registry == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + registry
}

// DefaultMirrored are the registries the embedded mirror serves besides
// those registries.yaml lists under mirrors: the usual upstreams and the
// names of the images distro carries.
var DefaultMirrored = []string{"registry.k8s.io", "docker.io", "distro.local"}

// Peers are the embedded registry mirrors: this node's and the other
// nodes', tried first for the Registries they serve.
type Peers struct {
	Endpoints []string // this node's first
	// CA verifies their serving certificates; Cert and Key are this
	// node's client certificate.
	CA, Cert, Key string
	Registries    []string
}

// Mirrored returns the registries the embedded mirror serves: the defaults
// and every registry listed under mirrors ("*" aside).
func (c *Config) Mirrored() []string {
	out := slices.Clone(DefaultMirrored)
	for r := range c.Mirrors {
		if r != "*" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// HostsFiles renders one hosts.toml per registry folder name ("_default"
// for "*"): the embedded mirrors (p, may be nil) first, then the mirrors
// of registries.yaml in order, then the registry itself (where containerd
// falls back), each with the TLS settings of its host.
func (c *Config) HostsFiles(p *Peers) map[string][]byte {
	out := map[string][]byte{}
	regs := map[string]bool{}
	for r := range c.Mirrors {
		regs[r] = true
	}
	for h := range c.Configs {
		regs[h] = true
	}
	if p != nil {
		for _, r := range p.Registries {
			regs[r] = true
		}
	}
	for reg := range regs {
		var b bytes.Buffer
		dir := reg
		if reg == "*" {
			dir = "_default"
		} else {
			fmt.Fprintf(&b, "server = %q\n", upstream(reg))
			if hc, ok := c.Configs[reg]; ok {
				writeTLS(&b, "", hc)
			}
		}
		if p != nil && reg != "*" && slices.Contains(p.Registries, reg) {
			for _, e := range p.Endpoints {
				fmt.Fprintf(&b, "\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", e)
				writeTLS(&b, "  ", HostConfig{CAFile: p.CA, CertFile: p.Cert, KeyFile: p.Key})
			}
		}
		for _, e := range c.Mirrors[reg].Endpoints {
			u, _ := url.Parse(e)
			fmt.Fprintf(&b, "\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", e)
			if hc, ok := c.Configs[u.Host]; ok {
				writeTLS(&b, "  ", hc)
			}
		}
		out[dir] = b.Bytes()
	}
	return out
}

func writeTLS(b *bytes.Buffer, indent string, hc HostConfig) {
	if hc.CAFile != "" {
		fmt.Fprintf(b, "%sca = %q\n", indent, hc.CAFile)
	}
	if hc.CertFile != "" {
		fmt.Fprintf(b, "%sclient = [[%q, %q]]\n", indent, hc.CertFile, hc.KeyFile)
	}
	if hc.InsecureSkipVerify {
		fmt.Fprintf(b, "%sskip_verify = true\n", indent)
	}
}

// WriteHosts replaces the folder's hosts.toml files with c's and the
// peers' (files of registries no longer listed are removed).
func (c *Config) WriteHosts(dir string, p *Peers) error {
	files := c.HostsFiles(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, keep := files[e.Name()]; !keep {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	for name, data := range files {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, name, "hosts.toml"), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// CRIRegistryTOML renders the CRI plugin's registry section: the hosts
// folder, and the per-host credentials (hosts.toml carries none). It goes
// after containerd's other CRI image settings.
func (c *Config) CRIRegistryTOML(hostsDir string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = %q\n", hostsDir)
	hosts := make([]string, 0, len(c.Configs))
	for h := range c.Configs {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		hc := c.Configs[h]
		if !hc.HasAuth() {
			continue
		}
		auth := map[string]string{}
		for k, v := range map[string]string{"username": hc.Username, "password": hc.Password, "auth": hc.Auth, "identitytoken": hc.IdentityToken} {
			if v != "" {
				auth[k] = v
			}
		}
		body, err := toml.Marshal(auth)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "[plugins.'io.containerd.cri.v1.images'.registry.configs.%q.auth]\n%s", h, body)
	}
	return b.Bytes(), nil
}

// AuthHash identifies the credentials: containerd reads them only at start.
func (c *Config) AuthHash() string {
	data, _ := c.CRIRegistryTOML("")
	sum := sha256.Sum256(data)
	return fmt.Sprintf("%x", sum[:8])
}
