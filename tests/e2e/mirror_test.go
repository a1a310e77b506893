package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEmbeddedRegistry: an image only in the server's airgap folder runs on both
// agents with imagePullPolicy Always (pulled from the server's embedded
// mirror); an anonymous client gets 401 from a mirror; with the server
// stopped, an agent that lacks the image pulls it from the other agent.
func TestEmbeddedRegistry(t *testing.T) {
	needNodeImage(t)
	c := newCluster(t, "distro-mirror")
	s, a1, a2 := c.node("s1"), c.node("a1"), c.node("a2")
	kubectl := func(args ...string) (string, error) { return kubectlOn(s, args...) }
	// The test image's registry is served by the mirrors, like the default
	// ones (registry.k8s.io, docker.io, distro.local).
	reg := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(reg, []byte("mirrors:\n  distro.test: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := []string{"-d", "-v", reg + ":/etc/distro/registries.yaml:ro"}
	// The test image only in the server's airgap folder.
	airgap := append(slices.Clone(opts), "-v", os.Getenv("E2E_TEST_IMAGE_TAR")+":/var/lib/distro/agent/images/distro-test.tar:ro")
	if out, err := runNode(c.net, s, airgap, "server"); err != nil {
		t.Fatalf("start server: %v\n%s", err, out)
	}
	token := serverToken(t, s)
	for _, a := range []string{a1, a2} {
		if out, err := runNode(c.net, a, opts, "agent", "--server", "https://"+s+":6443", "--token", token); err != nil {
			t.Fatalf("start %s: %v\n%s", a, err, out)
		}
	}
	eventually(t, 3*time.Minute, "3 nodes Ready", func() error {
		out, err := kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil || strings.Count(out, "True") != 3 {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	for _, n := range []string{a1, a2} {
		if _, err := docker("exec", n, "distro", "crictl", "inspecti", "distro.test/busybox:1"); err == nil {
			t.Fatalf("%s has the test image before any pull", n)
		}
	}

	pod := func(n string) string {
		return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"pull-%s"},
"spec":{"nodeName":%q,"terminationGracePeriodSeconds":1,"containers":[{"name":"c","image":"distro.test/busybox:1","imagePullPolicy":"Always",
"command":["/bin/sh","-c","exec sleep 100000"]}]}}`, n, n)
	}
	for _, n := range []string{a1, a2} {
		applyOn(t, s, pod(n))
	}
	if out, err := kubectl("wait", "--for=condition=Ready", "pod/pull-"+a1, "pod/pull-"+a2, "--timeout=120s"); err != nil {
		ev, _ := kubectl("get", "events", "-A")
		t.Fatalf("pods with imagePullPolicy Always: %v\n%s\n%s", err, out, ev)
	}

	// Anonymous: 401.
	ip := must(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", a1)
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, path := range []string{"/v2/", "/v2/busybox/manifests/1?ns=distro.test"} {
		resp, err := anon.Get("https://" + ip + ":6543" + path)
		if err != nil {
			t.Fatalf("anonymous GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous GET %s: HTTP %d, want 401", path, resp.StatusCode)
		}
	}

	// make bench: the time to pull a large image (E2E_BIG_IMAGE_TAR, tag
	// distro.test/big:1) from a peer (the server up: every peer answers).
	if big := os.Getenv("E2E_BIG_IMAGE_TAR"); big != "" {
		fi, err := os.Stat(big)
		if err != nil {
			t.Fatal(err)
		}
		must(t, "cp", big, a1+":/tmp/big.tar")
		must(t, "exec", a1, "distro", "ctr", "images", "import", "/tmp/big.tar")
		start := time.Now()
		if out, err := docker("exec", a2, "distro", "crictl", "pull", "distro.test/big:1"); err != nil {
			t.Fatalf("pull the large image from a peer: %v\n%s", err, out)
		}
		t.Logf("mirror: pulled a %d MB image from a peer in %.2f s", fi.Size()>>20, time.Since(start).Seconds())
	}

	// The server stops; agent 2, without the image, pulls it from agent 1.
	if out, err := kubectl("delete", "pod", "pull-"+a2, "--wait=true", "--timeout=60s"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	// Every name of the image (tag, digest, the CRI's image ID), and its
	// content with them.
	id := must(t, "exec", a2, "distro", "crictl", "inspecti", "-o", "go-template", "--template", "{{.status.id}}", "distro.test/busybox:1")
	id = id[strings.LastIndex(id, "\n")+1:]
	eventually(t, time.Minute, "the image removed from agent 2", func() error {
		refs, _ := docker("exec", a2, "distro", "ctr", "images", "ls", "-q")
		for _, ref := range strings.Fields(refs) {
			if strings.HasPrefix(ref, "distro.test/busybox") || ref == id {
				if out, err := docker("exec", a2, "distro", "ctr", "images", "rm", "--sync", ref); err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
			}
		}
		if out, err := docker("exec", a2, "distro", "crictl", "inspecti", "distro.test/busybox:1"); err == nil {
			return fmt.Errorf("agent 2 still has the image: %s", out)
		}
		return nil
	})
	must(t, "stop", "-t", "10", s)
	if out, err := docker("exec", a2, "distro", "crictl", "pull", "distro.test/busybox:1"); err != nil {
		// What agent 2's containerd was told to try, and what each host answered.
		hosts, _ := docker("exec", a2, "cat", "/var/lib/distro/agent/etc/containerd/certs.d/distro.test/hosts.toml")
		clog, _ := docker("exec", a2, "cat", "/var/lib/distro/agent/containerd/containerd.log")
		tried := linesWith(clog, "distro.test")
		tried = tried[max(0, len(tried)-20):]
		logs, _ := docker("logs", a2)
		peers := linesWith(logs, "registry mirror")
		t.Fatalf("agent 2 could not pull from agent 1 with the server stopped: %v\n%s\n--- agent 2's hosts.toml for distro.test:\n%s\n--- agent 2's containerd:\n%s\n--- agent 2's mirror:\n%s", err, out, hosts, strings.Join(tried, "\n"), strings.Join(peers, "\n"))
	}
}

// linesWith returns the lines of s that contain sub.
func linesWith(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}
