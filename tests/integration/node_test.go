package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestImage is the image the tests build from Debian's busybox-static.
const TestImage = "distro.test/busybox:1"

// buildTestImage writes a docker-archive of busybox-static to dst; extra
// are more mkimage arguments (another image ID).
func buildTestImage(t *testing.T, dst string, extra ...string) {
	t.Helper()
	mk := os.Getenv("MKIMAGE")
	if mk == "" {
		mk, _ = filepath.Abs("../../build/mkimage")
	}
	busybox := "/bin/busybox"
	if out, err := exec.Command("file", "-L", busybox).Output(); err == nil && !strings.Contains(string(out), "statically linked") {
		t.Fatalf("%s is not static (install Debian's busybox-static): %s", busybox, out)
	}
	args := []string{"--tag", TestImage, "--out", dst, "--entrypoint", "/bin/sh",
		"--file", busybox + ":/bin/busybox:0755", "--dir", "/tmp:1777", "--dir", "/www:0755"}
	for _, app := range []string{"sh", "httpd", "wget", "cat", "echo", "sleep", "hostname", "ls", "mkdir", "nc", "ip", "nslookup"} {
		args = append(args, "--symlink", "/bin/"+app+":busybox")
	}
	args = append(args, extra...)
	if out, err := exec.Command(mk, args...).CombinedOutput(); err != nil {
		t.Fatalf("build test image with %s: %v\n%s", mk, err, out)
	}
}

// withTestImage puts the test image in the airgap folder of a node's data
// dir and stops what the node leaves running when the test ends.
func withTestImage(t *testing.T, dataDir string) {
	t.Helper()
	images := filepath.Join(dataDir, "agent", "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	buildTestImage(t, filepath.Join(images, "busybox.tar"))
	t.Cleanup(func() { killall(t, dataDir) })
}

// killall runs package/distro-killall.sh for a data dir.
func killall(t *testing.T, dataDir string) {
	t.Helper()
	script, _ := filepath.Abs("../../package/distro-killall.sh")
	cmd := exec.Command("sh", script)
	cmd.Env = append(os.Environ(), "DISTRO_DATA_DIR="+dataDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("distro-killall.sh: %v\n%s", err, out)
	}
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

const webManifest = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: ` + TestImage + `
        imagePullPolicy: Never
        command: ["/bin/sh", "-c", "echo hello from $(hostname) > /www/index.html; echo web started; exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - name: client
    image: ` + TestImage + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "exec sleep 100000"]
---
apiVersion: v1
kind: Pod
metadata: {name: hostport}
spec:
  containers:
  - name: hp
    image: ` + TestImage + `
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo hello from hostport > /www/index.html; exec httpd -f -p 8080 -h /www"]
    ports: [{containerPort: 8080, hostPort: ` + hostPort + `}]
`

// hostPort is the hostPort test pod's port on the node (portmap's DNAT).
const hostPort = "18580"

func TestNodeRunsPods(t *testing.T) {
	requireRoot(t)
	s := NewServer(t, "--enable-pprof", "--pprof-address", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	withTestImage(t, s.DataDir)
	s.Start()

	Eventually(t, 2*time.Minute, "node Ready", func() error {
		if !strings.Contains(s.Log(), " Ready in ") {
			return fmt.Errorf("no node Ready line yet")
		}
		return nil
	})
	checkContainerdProfile(t)
	nodes := s.MustKubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.labels}")
	if !strings.Contains(nodes, `"node-role.kubernetes.io/control-plane":"true"`) {
		t.Errorf("node labels %s", nodes)
	}

	// flannel runs in-process: VXLAN device up, the node's VTEP published.
	if out, err := exec.Command("ip", "-d", "link", "show", "flannel.1").CombinedOutput(); err != nil || !strings.Contains(string(out), "vxlan id 1") {
		t.Errorf("flannel.1: %v\n%s", err, out)
	}
	if ann := s.MustKubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.annotations}"); !strings.Contains(ann, "flannel.alpha.coreos.com/backend-data") {
		t.Errorf("node has no flannel annotations: %s", ann)
	}

	manifest := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(manifest, []byte(webManifest), 0o644)
	s.MustKubectl("apply", "-f", manifest)
	s.MustKubectl("wait", "--for=condition=Available", "deployment/web", "--timeout=120s")
	s.MustKubectl("wait", "--for=condition=Ready", "pod/client", "pod/hostport", "--timeout=120s")

	podIPs := strings.Fields(s.MustKubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"))
	if len(podIPs) != 2 {
		t.Fatalf("pod IPs %v", podIPs)
	}
	clusterIP := s.MustKubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
	nodePort := s.MustKubectl("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].nodePort}")
	nodeIP := s.MustKubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)

	check := func(when string) {
		t.Helper()
		for _, ip := range podIPs {
			Eventually(t, 30*time.Second, when+": pod IP from the host", func() error {
				body, err := httpGet("http://" + ip + ":8080/")
				if err == nil && !strings.Contains(body, "hello from web-") {
					err = fmt.Errorf("body %q", body)
				}
				return err
			})
		}
		Eventually(t, 30*time.Second, when+": NodePort from the host", func() error {
			_, err := httpGet(fmt.Sprintf("http://%s:%s/", nodeIP, nodePort))
			return err
		})
		Eventually(t, 30*time.Second, when+": hostPort from the host", func() error {
			body, err := httpGet("http://" + net.JoinHostPort(nodeIP, hostPort) + "/")
			if err == nil && !strings.Contains(body, "hello from hostport") {
				err = fmt.Errorf("body %q", body)
			}
			return err
		})
		Eventually(t, 30*time.Second, when+": ClusterIP from another pod", func() error {
			// busybox-static's wget crashes without glibc's NSS modules; nc does not.
			out, err := s.Kubectl("exec", "client", "--", "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 `+clusterIP+" 80")
			if err != nil || !strings.Contains(out, "hello from web-") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		// An address and port no Service serves is refused on the node,
		// from a pod and from the host, never routed out of the cluster.
		Eventually(t, 30*time.Second, when+": unserved ClusterIP port refused from a pod", func() error {
			out, _ := s.Kubectl("exec", "client", "--", "sh", "-c", "nc -w 5 "+clusterIP+" 81 </dev/null 2>&1; true")
			if !strings.Contains(out, "refused") {
				return fmt.Errorf("want connection refused, got %q", out)
			}
			return nil
		})
		Eventually(t, 30*time.Second, when+": unserved ClusterIP port refused from the host", func() error {
			c, err := net.DialTimeout("tcp", clusterIP+":81", 5*time.Second)
			if err == nil {
				c.Close()
				return fmt.Errorf("%s:81 accepted a connection", clusterIP)
			}
			if !strings.Contains(err.Error(), "refused") {
				return fmt.Errorf("want connection refused, got %v", err)
			}
			return nil
		})
	}
	check("first start")
	// containerd brings a pod's lo up itself (use_internal_loopback).
	if out := s.MustKubectl("exec", "client", "--", "ip", "-o", "link", "show", "lo"); !strings.Contains(out, ",UP,") {
		t.Errorf("a pod's lo is not up: %q", out)
	}

	// The node's pods live under its own cgroup root, /distro/<node>, never
	// in a kubepods tree another node on the same host could share.
	nodeName := s.MustKubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	uid := s.MustKubectl("get", "pod", "client", "-o", "jsonpath={.metadata.uid}")
	v1, _ := filepath.Glob("/sys/fs/cgroup/memory/distro/" + nodeName + "/kubepods/*/pod" + uid) // cgroup v1
	v2, _ := filepath.Glob("/sys/fs/cgroup/distro/" + nodeName + "/kubepods/*/pod" + uid)        // v2, cgroupfs driver
	_, unified := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	_, systemd := os.Stat("/run/systemd/system")
	if unified == nil && systemd == nil {
		t.Log("cgroup v2 with systemd: the kubelet's kubepods.slice is kept")
	} else if len(v1)+len(v2) == 0 {
		out, _ := exec.Command("sh", "-c", "ls -d /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/memory/distro/*/* /sys/fs/cgroup/distro/*/* 2>&1").CombinedOutput()
		t.Errorf("pod %s has no cgroup under /distro/%s/kubepods:\n%s", uid, nodeName, out)
	}

	// kubectl logs and exec go through the apiserver to the kubelet. A
	// container's output reaches its log file a moment after it is Ready,
	// so the log is read until the line appears.
	Eventually(t, 30*time.Second, "kubectl logs deployment/web", func() error {
		if out, err := s.Kubectl("logs", "deployment/web"); err != nil || !strings.Contains(out, "web started") {
			return fmt.Errorf("kubectl logs: %v: %q", err, out)
		}
		return nil
	})
	if out := s.MustKubectl("exec", "deployment/web", "--", "cat", "/www/index.html"); !strings.Contains(out, "hello from web-") {
		t.Errorf("kubectl exec: %q", out)
	}

	// distro ctr talks to distro's containerd, k8s.io namespace.
	if out, err := exec.Command(distroBin(t), "ctr", "images", "ls", "-q").CombinedOutput(); err != nil || !strings.Contains(string(out), TestImage) || !strings.Contains(string(out), "registry.k8s.io/pause:3.10.2") {
		t.Errorf("distro ctr images ls: %v\n%s", err, out)
	}

	checkCrictl(t, s.DataDir, "web", "web started", []string{"cat", "/www/index.html"}, "hello from web-")

	// Pods outlive a server restart and still answer.
	err, took := s.Stop()
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took > 20*time.Second || !strings.Contains(s.Log(), "etcd closed") {
		t.Errorf("SIGTERM with a node: took %s (want ≤ 20 s), etcd closed cleanly: %v", took, strings.Contains(s.Log(), "etcd closed"))
	}
	t.Logf("shutdown with a node took %.1fs", took.Seconds())
	// A warm restart reads again only the image tarballs that changed: the
	// bundle's pause.tar is skipped, busybox.tar (touched) is imported.
	busybox := filepath.Join(s.DataDir, "agent", "images", "busybox.tar")
	if err := os.Chtimes(busybox, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Start()
	Eventually(t, time.Minute, "images imported after restart", func() error {
		if !strings.Contains(s.Log(), "images imported in") {
			return fmt.Errorf("no 'images imported' line yet")
		}
		return nil
	})
	imported := regexp.MustCompile(`images imported in .*not read again.*`).FindString(s.Log())
	if !strings.Contains(imported, "pause.tar") || strings.Contains(s.Log(), "imported pause.tar") || !strings.Contains(s.Log(), "imported busybox.tar ("+TestImage+")") {
		t.Errorf("warm restart: want pause.tar skipped and the touched busybox.tar imported again; log:\n%s", s.Tail(40))
	}
	check("after restart")

	// distro-killall.sh leaves no container, mount or interface.
	s.Stop()
	killall(t, s.DataDir)
	if out, _ := exec.Command("pgrep", "-f", "containerd-shim-runc-v2").Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("shims still running after killall: %s", out)
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, s.DataDir) || strings.Contains(line, "/run/distro") || strings.Contains(line, "/var/lib/kubelet/pods") {
			t.Errorf("mount left after killall: %s", line)
		}
	}
	for _, iface := range []string{"cni0", "flannel.1"} {
		if err := exec.Command("ip", "link", "show", iface).Run(); err == nil {
			t.Errorf("interface %s left after killall", iface)
		}
	}
}

// checkCrictl runs `distro crictl` (the upstream crictl carried in the
// runtime bundle of dataDir) against the node's containerd: pods, ps,
// images, logs and exec of a container named container.
func checkCrictl(t *testing.T, dataDir, container, logWant string, execCmd []string, execWant string) {
	t.Helper()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(distroBin(t), append([]string{"crictl"}, args...)...)
		cmd.Env = append(os.Environ(), "DISTRO_DATA_DIR="+dataDir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			return string(out), fmt.Errorf("distro crictl %v: %v\n%s%s", args, err, out, stderr.String())
		}
		return string(out), nil
	}
	crictl := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Error(err)
		}
		return out
	}
	if out := crictl("pods", "--state", "ready"); !strings.Contains(out, "POD ID") || strings.Count(out, "\n") < 2 {
		t.Errorf("crictl pods lists no ready pod:\n%s", out)
	}
	ids := strings.Fields(crictl("ps", "--name", "^"+container+"$", "-q"))
	if len(ids) == 0 {
		t.Errorf("crictl ps --name %s: no container", container)
		return
	}
	if out := crictl("images"); !strings.Contains(out, TestImage[:strings.LastIndex(TestImage, ":")]) {
		t.Errorf("crictl images does not list %s:\n%s", TestImage, out)
	}
	// The container's output reaches its log file a moment after it starts.
	Eventually(t, 30*time.Second, "crictl logs "+ids[0], func() error {
		if out, err := run("logs", ids[0]); err != nil || !strings.Contains(out, logWant) {
			return fmt.Errorf("crictl logs %s: %v: %q, want %q", ids[0], err, out, logWant)
		}
		return nil
	})
	if out := crictl(append([]string{"exec", ids[0]}, execCmd...)...); !strings.Contains(out, execWant) {
		t.Errorf("crictl exec %v: %q, want %q", execCmd, out, execWant)
	}
}

// checkContainerdProfile fetches containerd's heap profile from its debug
// socket (--enable-pprof) and checks it is containerd's.
func checkContainerdProfile(t *testing.T) {
	t.Helper()
	const sock = "/run/distro/containerd/debug.sock"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := client.Get("http://containerd/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatalf("containerd's profile (--enable-pprof): %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "github.com/containerd/containerd/v2/") {
		t.Fatalf("containerd's heap profile on %s: status %d, %d bytes without containerd's frames", sock, resp.StatusCode, len(body))
	}
}
