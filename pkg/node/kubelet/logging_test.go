package kubelet

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kubelet/app/options"

	"distro/pkg/config"
)

// The kubelet's own logging apply, run as the node starts while the control
// plane already logs, must change nothing: the process applied the same
// configuration before any component started (the first apply replaces
// klog's global logger, which races with every goroutine that logs). The
// kubelet's configuration is built here as the kubelet builds it: its
// defaults, then the v and vmodule distro passes in its flags.
func TestKubeletLoggingIsTheProcessLogging(t *testing.T) {
	n := config.Node{NodeName: "n1", ProxyMode: "iptables", Verbosity: 2,
		KubeletArgs: []string{"v=3", "--vmodule=kubelet=4,proxier=5"}}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := n.ApplyLogging(); err != nil {
		t.Fatal(err)
	}
	sink := klog.Background().GetSink()

	extra, err := config.ParseArgs("--kubelet-arg", n.KubeletArgs)
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, a := range (&Kubelet{Extra: extra}).Args("kubelet.yaml") {
		if strings.HasPrefix(a, "--v=") || strings.HasPrefix(a, "--vmodule=") {
			flags = append(flags, a)
		}
	}
	if len(flags) != 2 {
		t.Fatalf("kubelet flags %q: want its v and vmodule", flags)
	}
	kc, err := options.NewKubeletConfiguration()
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	options.AddKubeletConfigFlags(fs, kc)
	if err := fs.Parse(flags); err != nil {
		t.Fatal(err)
	}
	if kc.Logging.Verbosity != 3 || len(kc.Logging.VModule) != 2 {
		t.Fatalf("kubelet's logging from %q: v %d, vmodule %v", flags, kc.Logging.Verbosity, kc.Logging.VModule)
	}
	if err := logsapi.ValidateAndApply(&kc.Logging, utilfeature.DefaultFeatureGate); err != nil {
		t.Fatalf("the kubelet's logging differs from the process's: %v", err)
	}
	if klog.Background().GetSink() != sink {
		t.Fatal("the kubelet's apply replaced klog's logger")
	}
}
