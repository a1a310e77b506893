package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	encryptionconfigcontroller "k8s.io/apiserver/pkg/server/options/encryptionconfig/controller"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	apiapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apioptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"distro/pkg/config"
)

// APIServer runs kube-apiserver.
type APIServer struct {
	Args []string
	// Client is used to poll /readyz; set before Run.
	Client kubernetes.Interface
	// Wrap, when set, wraps the apiserver's whole handler chain: distro's
	// join API is served on the apiserver's own port this way.
	Wrap func(http.Handler) http.Handler
}

// APIServerInput is what the apiserver flags are made of.
type APIServerInput struct {
	BindAddress, AdvertiseAddress string
	Port                          int
	ServiceCIDR, ClusterDomain    string
	EtcdURL                       string
	File                          func(name string) string // path in the TLS folder
	// EncryptionConfig, when set, is the EncryptionConfiguration for
	// Secrets; the apiserver reloads it when it changes.
	EncryptionConfig string
	// Audit is the audit policy and log.
	Audit Audit
	Extra []config.Arg
}

// NewAPIServer builds the apiserver's flags: secure by default (Node and
// RBAC authorization, no anonymous access, NodeRestriction, no insecure
// port), overridable with --kube-apiserver-arg.
func NewAPIServer(in APIServerInput) *APIServer {
	f := in.File
	issuer := "https://kubernetes.default.svc." + in.ClusterDomain
	defaults := map[string]string{
		"advertise-address":                  in.AdvertiseAddress,
		"bind-address":                       in.BindAddress,
		"secure-port":                        strconv.Itoa(in.Port),
		"allow-privileged":                   "true",
		"anonymous-auth":                     "false",
		"authorization-mode":                 "Node,RBAC",
		"enable-admission-plugins":           "NodeRestriction",
		"enable-aggregator-routing":          "true",
		"profiling":                          "false",
		"etcd-servers":                       in.EtcdURL,
		"etcd-cafile":                        f("etcd/server-ca.crt"),
		"etcd-certfile":                      f("etcd/client.crt"),
		"etcd-keyfile":                       f("etcd/client.key"),
		"client-ca-file":                     f("client-ca.crt"),
		"tls-cert-file":                      f("serving-kube-apiserver.crt"),
		"tls-private-key-file":               f("serving-kube-apiserver.key"),
		"kubelet-client-certificate":         f("client-kube-apiserver.crt"),
		"kubelet-client-key":                 f("client-kube-apiserver.key"),
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"kubelet-certificate-authority":      f("server-ca.crt"),
		"proxy-client-cert-file":             f("client-auth-proxy.crt"),
		"proxy-client-key-file":              f("client-auth-proxy.key"),
		"requestheader-client-ca-file":       f("request-header-ca.crt"),
		"requestheader-allowed-names":        "system:auth-proxy",
		"requestheader-username-headers":     "X-Remote-User",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"service-account-issuer":             issuer,
		"api-audiences":                      issuer,
		"service-account-key-file":           f("service.key"),
		"service-account-signing-key-file":   f("service.key"),
		"service-cluster-ip-range":           in.ServiceCIDR,
	}
	for k, v := range auditFlags(in.Audit) {
		defaults[k] = v
	}
	if in.EncryptionConfig != "" {
		defaults["encryption-provider-config"] = in.EncryptionConfig
		defaults["encryption-provider-config-automatic-reload"] = "true"
	}
	return &APIServer{Args: flagArgs(defaults, in.Extra)}
}

func (a *APIServer) Name() string { return "kube-apiserver" }

// Options parses the flags into upstream options; errors name the flag.
func (a *APIServer) Options() (*apioptions.ServerRunOptions, error) {
	s := apioptions.NewServerRunOptions()
	if err := parseInto("kube-apiserver", s.Flags(), a.Args); err != nil {
		return nil, err
	}
	return s, nil
}

// Run implements component.Component.
func (a *APIServer) Run(ctx context.Context, ready func()) error {
	s, err := a.Options()
	if err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	// A changed EncryptionConfiguration (secrets-encrypt rotate-keys) is
	// picked up within seconds rather than upstream's minute.
	encryptionconfigcontroller.EncryptionConfigFileChangePollDuration = 5 * time.Second
	go a.waitReady(ctx, ready)
	// What apiapp.Run does, with the handler chain wrapped.
	if completed.InformerName == nil {
		if completed.InformerName, err = cache.NewInformerName("kube-apiserver"); err != nil {
			return err
		}
	}
	config, err := apiapp.NewConfig(completed)
	if err != nil {
		return err
	}
	if a.Wrap != nil {
		gc := &config.Aggregator.GenericConfig.Config
		build := gc.BuildHandlerChainFunc
		gc.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
			return a.Wrap(build(h, c))
		}
	}
	cc, err := config.Complete()
	if err != nil {
		return err
	}
	server, err := apiapp.CreateServerChain(cc)
	if err != nil {
		return err
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

// waitReady polls /readyz until it answers ok, every 20 ms: the rest of the
// server waits for it, and a poll that fails costs a refused connection or
// a short answer (at 100 ms, a start waited 50 ms on average for nothing).
func (a *APIServer) waitReady(ctx context.Context, ready func()) {
	last := ""
	_ = wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		body, err := a.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		if err != nil {
			if msg := fmt.Sprint(err); msg != last {
				klog.V(2).Infof("apiserver not ready yet: %s", body)
				last = msg
			}
			return false, nil
		}
		ready()
		return true, nil
	})
}

// LoopbackConfig returns a rest.Config that reaches the apiserver from this
// host with the client certificate and key in these files (reloaded by
// client-go when they are renewed).
func LoopbackConfig(bind string, port int, caPEM []byte, certFile, keyFile string) *rest.Config {
	return &rest.Config{
		Host:            LocalURL(bind, port),
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, CertFile: certFile, KeyFile: keyFile},
		QPS:             50,
		Burst:           100,
	}
}

// LocalURL is the apiserver URL to use from this host: the loopback address
// unless the apiserver is bound to one specific address.
func LocalURL(bind string, port int) string {
	host := "127.0.0.1"
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		host = ip.String()
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port))
}
