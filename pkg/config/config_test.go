package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// parse runs the server flags and config file as `distro server` does.
func parse(t *testing.T, args []string, file string) (*Server, error) {
	t.Helper()
	s := &Server{}
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	AddServerFlags(fs, s)
	if file != "" {
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", p)
	} else {
		args = append(args, "--config", filepath.Join(t.TempDir(), "absent.yaml"))
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := ApplyFile(fs, s.ConfigFile, file != ""); err != nil {
		return nil, err
	}
	s.NodeIP = firstNonEmpty(s.NodeIP, "192.0.2.1")
	return s, s.Validate()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestDefaults(t *testing.T) {
	s, err := parse(t, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.DataDir != "/var/lib/distro" || s.HTTPSListenPort != 6443 || s.ClusterCIDR != "10.42.0.0/16" ||
		s.ServiceCIDR != "10.43.0.0/16" || s.ClusterDNS != "10.43.0.10" || s.ClusterDomain != "cluster.local" ||
		s.WriteKubeconfig != "/etc/distro/distro.yaml" || s.AdvertiseAddress != "192.0.2.1" {
		t.Errorf("defaults: %+v", s)
	}
	if m, _ := s.KubeconfigMode(); m != 0o600 {
		t.Errorf("kubeconfig mode %o", m)
	}
	if s.DisableNetworkPolicy {
		t.Error("NetworkPolicy enforcement must be on by default")
	}
}

func TestFileAndFlags(t *testing.T) {
	file := `
data-dir: /tmp/x
https-listen-port: 7443
tls-san: [a.example.com, 203.0.113.9]
write-kubeconfig-mode: 0644
disable-agent: true
kube-apiserver-arg:
  - v=2
cluster-dns: 10.43.0.10
disable: [coredns, metrics-server]
disable-network-policy: true
`
	s, err := parse(t, []string{"--https-listen-port=8443"}, file)
	if err != nil {
		t.Fatal(err)
	}
	if s.HTTPSListenPort != 8443 {
		t.Errorf("flag must win over the file: port %d", s.HTTPSListenPort)
	}
	if s.DataDir != "/tmp/x" || !s.DisableAgent || len(s.TLSSANs) != 2 || s.TLSSANs[1] != "203.0.113.9" {
		t.Errorf("file values not applied: %+v", s)
	}
	if m, _ := s.KubeconfigMode(); m != 0o644 {
		t.Errorf("write-kubeconfig-mode 0644 read as %o", m)
	}
	if !s.DisableNetworkPolicy {
		t.Error("disable-network-policy: true in the file not applied")
	}
	if strings.Join(s.Disable, ",") != "coredns,metrics-server" {
		t.Errorf("disable %v", s.Disable)
	}
	if len(s.KubeAPIServerArgs) != 1 || s.KubeAPIServerArgs[0] != "v=2" {
		t.Errorf("kube-apiserver-arg %v", s.KubeAPIServerArgs)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		file  string
		wants string
	}{
		{"invalid cluster CIDR", []string{"--cluster-cidr=10.42.0.0/33"}, "", "--cluster-cidr"},
		{"invalid service CIDR", []string{"--service-cidr=nope"}, "", "--service-cidr"},
		{"overlapping CIDRs", []string{"--cluster-cidr=10.0.0.0/8", "--service-cidr=10.43.0.0/16"}, "", "overlap"},
		{"DNS outside service CIDR", []string{"--cluster-dns=10.99.0.10"}, "", "--cluster-dns"},
		{"bad port", []string{"--https-listen-port=70000"}, "", "--https-listen-port"},
		{"bad kubeconfig mode", []string{"--write-kubeconfig-mode=rw"}, "", "--write-kubeconfig-mode"},
		{"bad node ip", []string{"--node-ip=1.2.3"}, "", "--node-ip"},
		{"bad pass-through", []string{"--kube-apiserver-arg==x"}, "", "--kube-apiserver-arg"},
		{"malformed file", nil, "data-dir: [unclosed\n", "not valid YAML"},
		{"unknown key", nil, "data-dir: /x\nno-such-key: 1\n", `unknown key "no-such-key"`},
		{"list for scalar", nil, "data-dir: [a, b]\n", `key "data-dir" takes one value`},
		{"bad value in file", nil, "https-listen-port: lots\n", `key "https-listen-port"`},
		{"file not a mapping", nil, "- a\n- b\n", "mapping"},
		{"unknown flag", []string{"--no-such-flag"}, "", "unknown flag"},
		{"missing resolv.conf", []string{"--resolv-conf=/no/such/resolv.conf"}, "", `--resolv-conf "/no/such/resolv.conf": not a readable file`},
		{"unknown add-on", []string{"--disable=coredns,traefik"}, "", `--disable "traefik": not a packaged add-on`},
		{"bad snapshot cron", []string{"--etcd-snapshot-schedule-cron=0 */12 * *"}, "", "--etcd-snapshot-schedule-cron"},
		{"zero snapshot retention", []string{"--etcd-snapshot-retention=0"}, "", "--etcd-snapshot-retention 0"},
		{"missing audit policy", []string{"--audit-policy-file=/no/such/policy.yaml"}, "", `--audit-policy-file "/no/such/policy.yaml": not a readable file`},
		{"unknown encryption provider", []string{"--secrets-encryption-provider=rot13"}, "", `--secrets-encryption-provider "rot13": must be aescbc or secretbox`},
		{"restore path without reset", []string{"--cluster-reset-restore-path=/etc/hostname"}, "", "only used with --cluster-reset"},
		{"missing restore file", []string{"--cluster-reset", "--cluster-reset-restore-path=/no/such/snapshot"}, "", `--cluster-reset-restore-path "/no/such/snapshot": not a readable file`},
		{"join URL not https", []string{"--server=http://10.0.0.1:6443", "--token=x"}, "", `--server "http://10.0.0.1:6443": want https://`},
		{"join without token", []string{"--server=https://10.0.0.1:6443"}, "", "--server needs --token"},
		{"join and init", []string{"--server=https://10.0.0.1:6443", "--token=x", "--cluster-init"}, "", "exclude each other"},
		{"unknown add-on in file", nil, "disable: [metrics-server, dns]\n", `--disable "dns"`},
		{"network policy switch not a boolean", nil, "disable-network-policy: sometimes\n", `key "disable-network-policy": invalid value "sometimes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.args, tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wants)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestMissingExplicitConfigFile(t *testing.T) {
	s := &Server{}
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	AddServerFlags(fs, s)
	if err := ApplyFile(fs, filepath.Join(t.TempDir(), "nope.yaml"), true); err == nil {
		t.Fatal("missing --config file accepted")
	}
	if err := ApplyFile(fs, filepath.Join(t.TempDir(), "nope.yaml"), false); err != nil {
		t.Fatalf("missing default config file: %v", err)
	}
}

func TestParseArgs(t *testing.T) {
	args, err := ParseArgs("--x", []string{"v=2", "--feature-gates=A=true,B=false", "profiling"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Arg{{"v", "2"}, {"feature-gates", "A=true,B=false"}, {"profiling", "true"}}
	for i := range want {
		if args[i] != want[i] {
			t.Errorf("arg %d = %v, want %v", i, args[i], want[i])
		}
	}
}

func TestAgentValidate(t *testing.T) {
	base := func() *Agent {
		return &Agent{Server: "https://192.0.2.1:6443", DataDir: t.TempDir(), NodeIP: "192.0.2.2", LBPort: 6444, Node: Node{NodeName: "w1", ProxyMode: "iptables"}}
	}
	a := base()
	t.Setenv("DISTRO_TOKEN", "K10abc::server:s")
	if err := a.Validate(); err != nil || a.Token != "K10abc::server:s" {
		t.Fatalf("token from $DISTRO_TOKEN: %v %q", err, a.Token)
	}
	t.Setenv("DISTRO_TOKEN", "")
	for name, tc := range map[string]struct {
		mod  func(*Agent)
		want string
	}{
		"no server":    {func(a *Agent) { a.Server = "" }, "--server"},
		"http server":  {func(a *Agent) { a.Server = "http://x:6443" }, "--server"},
		"no token":     {func(a *Agent) {}, "--token"},
		"both tokens":  {func(a *Agent) { a.Token, a.TokenFile = "x", "/y" }, "not both"},
		"missing file": {func(a *Agent) { a.TokenFile = "/nonexistent/token" }, "--token-file"},
		"bad node ip":  {func(a *Agent) { a.Token, a.NodeIP = "x", "1.2" }, "--node-ip"},
		"bad taint":    {func(a *Agent) { a.Token, a.NodeTaints = "x", []string{"a=b"} }, "--node-taint"},
		"bad lb port":  {func(a *Agent) { a.Token, a.LBPort = "x", 0 }, "--lb-server-port"},
	} {
		a := base()
		tc.mod(a)
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestAgentNetworkPolicyFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		file string
		want bool
	}{
		{nil, "", false},
		{[]string{"--disable-network-policy"}, "", true},
		{nil, "disable-network-policy: true\n", true},
		{[]string{"--disable-network-policy=false"}, "disable-network-policy: true\n", false},
	} {
		a := &Agent{}
		fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
		AddAgentFlags(fs, a)
		p := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(p, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := ApplyFile(fs, p, true); err != nil {
			t.Fatal(err)
		}
		if a.DisableNetworkPolicy != tc.want {
			t.Errorf("args %v, file %q: DisableNetworkPolicy = %v, want %v", tc.args, tc.file, a.DisableNetworkPolicy, tc.want)
		}
	}
}

// The components share one logger: a verbosity given to one of them, or to
// distro, reaches them all, and the process's verbosity is the highest.
func TestVerbosityIsShared(t *testing.T) {
	s, err := parse(t, []string{"--kubelet-arg=v=4", "--kube-apiserver-arg=v=2", "--kube-proxy-arg=proxy-mode=iptables", "--vmodule=cni*=5"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Verbosity != 4 || s.VModule != "cni*=5" {
		t.Fatalf("verbosity %d, vmodule %q", s.Verbosity, s.VModule)
	}
	for name, list := range map[string][]string{
		"kubelet": s.KubeletArgs, "kube-proxy": s.KubeProxyArgs, "apiserver": s.KubeAPIServerArgs,
		"scheduler": s.KubeSchedulerArgs, "controller-manager": s.KubeControllerManagerArgs,
	} {
		var got []string
		for _, a := range list {
			if strings.HasPrefix(a, "v=") || strings.HasPrefix(a, "vmodule=") {
				got = append(got, a)
			}
		}
		if strings.Join(got, " ") != "v=4 vmodule=cni*=5" {
			t.Errorf("%s args %q: want v=4 and vmodule=cni*=5 once", name, list)
		}
	}
	if len(s.KubeProxyArgs) != 3 || s.KubeProxyArgs[0] != "proxy-mode=iptables" {
		t.Errorf("kube-proxy args %q: its own flag lost", s.KubeProxyArgs)
	}
	// Validate again (the config is checked more than once): no change.
	before := strings.Join(s.KubeletArgs, " ")
	if err := s.Validate(); err != nil || strings.Join(s.KubeletArgs, " ") != before {
		t.Fatalf("second Validate: %v, kubelet args %q (was %q)", err, s.KubeletArgs, before)
	}

	s, err = parse(t, []string{"-v", "3"}, "")
	if err != nil || s.Verbosity != 3 || strings.Join(s.KubeSchedulerArgs, " ") != "v=3" {
		t.Fatalf("-v 3: err %v, verbosity %d, scheduler args %q", err, s.Verbosity, s.KubeSchedulerArgs)
	}
	s, err = parse(t, nil, "")
	if err != nil || s.Verbosity != 0 || len(s.KubeletArgs) != 0 {
		t.Fatalf("no verbosity: err %v, verbosity %d, kubelet args %q", err, s.Verbosity, s.KubeletArgs)
	}

	for _, bad := range [][]string{
		{"--kubelet-arg=v=high"},
		{"--kube-proxy-arg=v=-1"},
		{"--kubelet-arg=vmodule=a=1", "--kube-scheduler-arg=vmodule=b=2"},
		{"--vmodule=cni"},
	} {
		if _, err := parse(t, bad, ""); err == nil {
			t.Errorf("%q: no error", bad)
		} else {
			t.Logf("%q: %v", bad, err)
		}
	}
}
