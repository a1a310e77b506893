// Package containerd runs distro's own containerd: the upstream daemon from
// the runtime bundle carried in the distro binary (a process of its own, so
// it does not pay for the Kubernetes packages linked into distro), with its
// root, state and socket apart from any containerd or Docker on the host.
package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"k8s.io/klog/v2"

	"distro/pkg/datadir"
	"distro/pkg/fsutil"
	"distro/pkg/node/registries"
	"distro/pkg/profiling"
)

// PauseImage is the sandbox image, carried in the binary.
const PauseImage = "registry.k8s.io/pause:3.10.2"

// Containerd is the containerd component.
type Containerd struct {
	Paths datadir.Agent
	Bin   string // runc, shim and CNI plugins
	// BinReady, when set, waits until Bin is there (the bundle's
	// extraction) and reports its error.
	BinReady func() error
	// Registries is registries.yaml (checked at start); RegistriesRequired
	// says whether it must exist. It is re-read every RegistriesPoll: new
	// mirrors apply at the next pull, new credentials restart containerd
	// (its CRI plugin reads them only at start; pods keep running).
	Registries         string
	RegistriesRequired bool
	RegistriesPoll     time.Duration
	// Peers, when set, gives the embedded registry mirrors to try first
	// (nil: none yet); it is asked at every RegistriesPoll.
	Peers func() *registries.Peers
	// Debug, when set (--enable-pprof), has containerd serve Go's pprof
	// profiles and expvars on the unix socket DebugSocket.
	Debug bool
}

// DebugSocket is containerd's debug endpoint (with Debug):
// curl --unix-socket DebugSocket http://containerd/debug/pprof/heap.
func (c *Containerd) DebugSocket() string {
	return filepath.Join(c.Paths.ContainerdRun, "debug.sock")
}

// peers are the embedded mirrors, for the registries reg has them serve.
func (c *Containerd) peers(reg *registries.Config) *registries.Peers {
	if c.Peers == nil {
		return nil
	}
	p := c.Peers()
	p.Registries = reg.Mirrored()
	return p
}

// HostsDir is containerd's registry hosts folder (config_path).
func (c *Containerd) HostsDir() string { return filepath.Join(c.Paths.Etc, "containerd", "certs.d") }

func (c *Containerd) Name() string { return "containerd" }

// ShimGroupAnnotation is the pod annotation that puts a pod's sandbox and
// containers in a shared shim: containerd's runc shim serves every
// container whose spec carries it with the same value from one process
// (per node), and containerd's CRI passes it from the pod to the specs.
// A shim costs ~8 MB PSS (5 MB of it its own heap and runtime), one per pod
// otherwise.
const ShimGroupAnnotation = "io.containerd.runc.v2.group"

// AddonShimGroup is the shim group of the packaged add-ons (their
// manifests carry it): CoreDNS, local-path-provisioner and metrics-server
// share one shim on a node instead of three.
const AddonShimGroup = "distro-addons"

var configTmpl = template.Must(template.New("config").Parse(`version = 3
root = "{{.Root}}"
state = "{{.State}}"

[grpc]
  address = "{{.Socket}}"
{{- if .Debug}}

[debug]
  address = "{{.Debug}}"
{{- end}}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{.Pause}}"

[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = {{.RestrictOOM}}
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      # A pod annotated {{.ShimGroup}}=NAME runs in the one shim of
      # group NAME on this node instead of a shim of its own (the packaged
      # add-ons share "{{.AddonShimGroup}}").
      pod_annotations = ["{{.ShimGroup}}"]
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{{.Bin}}/runc"
        SystemdCgroup = {{.SystemdCgroup}}
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{{.Bin}}"]
    conf_dir = "{{.CNIConf}}"
    # containerd brings each pod's lo up itself: one exec (the loopback
    # plugin) less on every pod's network setup and teardown.
    use_internal_loopback = true
`))

// Config renders containerd's config, with the registry settings of reg.
func (c *Containerd) Config(restrictOOM, systemd bool, reg *registries.Config) ([]byte, error) {
	var b bytes.Buffer
	debug := ""
	if c.Debug {
		debug = c.DebugSocket()
	}
	err := configTmpl.Execute(&b, map[string]interface{}{
		"Root": c.Paths.Containerd, "State": c.Paths.ContainerdRun, "Socket": c.Paths.Socket,
		"Pause": PauseImage, "RestrictOOM": restrictOOM, "Bin": c.Bin, "SystemdCgroup": systemd,
		"CNIConf": c.Paths.CNIConf, "Debug": debug, "ShimGroup": ShimGroupAnnotation, "AddonShimGroup": AddonShimGroup,
	})
	if err != nil {
		return nil, err
	}
	section, err := reg.CRIRegistryTOML(c.HostsDir())
	if err != nil {
		return nil, err
	}
	b.WriteString("\n")
	b.Write(section)
	return b.Bytes(), nil
}

// Run starts containerd as a child process. If it exits, the component
// fails and the node stops; it is restarted only to apply new registry
// credentials.
func (c *Containerd) Run(ctx context.Context, ready func()) error {
	if c.BinReady != nil {
		if err := c.BinReady(); err != nil {
			return err
		}
	}
	restrict := MustRestrictOOMScoreAdj()
	if restrict {
		klog.Info("this process cannot lower oom_score_adj (no CAP_SYS_RESOURCE, e.g. inside a container): containerd will keep pods' oom_score_adj at or above its own")
	}
	systemd := SystemdCgroups()
	reg, err := c.loadRegistries()
	if err != nil {
		return err
	}
	for _, d := range []string{c.Paths.Containerd, c.Paths.ContainerdRun, c.Paths.CNIConf} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	for {
		if err := reg.WriteHosts(c.HostsDir(), c.peers(reg)); err != nil {
			return fmt.Errorf("registry hosts: %w", err)
		}
		cfg, err := c.Config(restrict, systemd, reg)
		if err != nil {
			return err
		}
		cfgPath := filepath.Join(c.Paths.Etc, "containerd", "config.toml")
		if err := fsutil.WriteFileAtomic(cfgPath, cfg, 0o600); err != nil {
			return err
		}
		next, err := c.runOnce(ctx, ready, cfgPath, reg)
		if next == nil || err != nil {
			return err
		}
		reg = next
	}
}

func (c *Containerd) loadRegistries() (*registries.Config, error) {
	if c.Registries == "" {
		return &registries.Config{}, nil
	}
	return registries.Load(c.Registries, c.RegistriesRequired)
}

// runOnce runs containerd until ctx ends (nil, nil), it exits (an error),
// or registries.yaml's credentials change (the new config: run again).
func (c *Containerd) runOnce(ctx context.Context, ready func(), cfgPath string, reg *registries.Config) (*registries.Config, error) {
	logf, err := os.OpenFile(c.Paths.ContainerdLogs, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(c.Bin, "containerd"), "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "PATH="+c.Bin+":"+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, profiling.GOGCEnv()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	klog.Infof("starting containerd (socket %s, log %s)", c.Paths.Socket, c.Paths.ContainerdLogs)
	if c.Debug {
		klog.Infof("containerd serves Go profiles on unix socket %s: curl --unix-socket %s http://containerd/debug/pprof/", c.DebugSocket(), c.DebugSocket())
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// A burst of pods runs containerd's sandbox, task and snapshot code,
	// and its pages go back once containerd's busy spell is over: its own,
	// not this process's (ProcessSpells), as much of containerd's work
	// comes after the kubelet's: the sandboxes of a burst's pods are
	// removed at the kubelet's next garbage collection, and pages released
	// before that would come back and stay.
	spellsDone := make(chan struct{})
	defer close(spellsDone)
	go profiling.ProcessSpells(spellsDone, profiling.CPUAbove(cmd.Process.Pid, containerdBusyShare),
		func() { releasePages("containerd", "a busy spell", cmd.Process.Pid) })
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for runCtx.Err() == nil {
			if err := Ping(runCtx, c.Paths.Socket); err == nil {
				ready()
				go DrainContainerEvents(runCtx, c.Paths.Socket)
				// After the image import too: unpacking the carried
				// images runs containerd's content and snapshot code.
				select {
				case <-profiling.BootWorkDone():
					releaseStartPages(cmd.Process.Pid)
				case <-runCtx.Done():
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	poll := c.RegistriesPoll
	if poll == 0 {
		poll = 5 * time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	hosts, lastErr := reg.HostsFiles(c.peers(reg)), ""
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("containerd exited: %v (see %s)", err, c.Paths.ContainerdLogs)
		case <-ctx.Done():
			stop()
			return nil, nil
		case <-tick.C:
			next, err := c.loadRegistries()
			if err != nil {
				if err.Error() != lastErr {
					klog.Errorf("%v: keeping the registry settings in use", err)
					lastErr = err.Error()
				}
				continue
			}
			lastErr = ""
			if next.AuthHash() != reg.AuthHash() {
				klog.Infof("%s: registry credentials changed: restarting containerd to apply them (pods keep running)", c.Registries)
				stop()
				return next, nil
			}
			peers := c.peers(next)
			if files := next.HostsFiles(peers); !reflect.DeepEqual(files, hosts) {
				if err := next.WriteHosts(c.HostsDir(), peers); err != nil {
					klog.Errorf("registry hosts: %v", err)
					continue
				}
				klog.Infof("registry mirrors changed: applied (next pulls use them)")
				hosts, reg = files, next
			}
		}
	}
}

// MustRestrictOOMScoreAdj reports whether this process is unable to lower
// its oom_score_adj (then runc could not honour the kubelet's values).
func MustRestrictOOMScoreAdj() bool {
	const p = "/proc/self/oom_score_adj"
	data, err := os.ReadFile(p)
	if err != nil {
		return true
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || cur <= -1000 {
		return cur > -1000
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(cur-1)), 0o644); err != nil {
		return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
	}
	os.WriteFile(p, []byte(strconv.Itoa(cur)), 0o644)
	return false
}

// CgroupV2 reports whether the host runs the unified cgroup hierarchy.
func CgroupV2() bool {
	var st syscall.Statfs_t
	return syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 // CGROUP2_SUPER_MAGIC
}

// SystemdCgroups reports whether cgroups should be driven through systemd:
// on cgroup v2 hosts booted with systemd.
func SystemdCgroups() bool {
	if !CgroupV2() {
		return false
	}
	_, err := os.Stat("/run/systemd/system")
	return err == nil
}

// releaseStartPages hands back to the kernel the pages of containerd's
// executable that its start and the node's image import touched (the init
// code of every plugin it links, content ingestion, unpacking), as distro
// does with its own once booted; what containerd uses again comes back from
// the page cache.
func releaseStartPages(pid int) { releasePages("containerd", "its start and the image import", pid) }

// containerdBusyShare is the share of one core above which containerd is
// busy (ProcessSpells): an idle node's containerd (the kubelet's status and
// stats queries) uses under a fifth of it.
const containerdBusyShare = 0.05

// releasePages hands back the pages of process pid's executable that what
// touched (profiling.ReleaseProcessExecutablePages), and logs the outcome
// as who.
func releasePages(who, what string, pid int) {
	before, after, err := profiling.ReleaseProcessExecutablePages(pid)
	if err != nil {
		klog.Infof("%s: the executable's pages %s touched stay resident (%v)", who, what, err)
		return
	}
	klog.Infof("%s: the executable's pages %s touched handed back to the kernel: file-backed RSS %d MB -> %d MB", who, what, before>>20, after>>20)
}
