// Package manifests carries the packaged add-ons, as text/template files
// that distro renders into <data-dir>/server/manifests at start (cluster DNS
// address, domain, storage folder, image names), and the names of the
// add-on images that scripts/build-addons.sh builds (images.env).
package manifests

import (
	"bufio"
	"bytes"
	"embed"
	"strings"
)

//go:embed *.yaml images.env
var FS embed.FS

// Images returns the KEY=value lines of images.env.
func Images() map[string]string {
	data, _ := FS.ReadFile("images.env")
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out
}

// AddonImages are the images of the packaged add-ons' long-running
// containers (every *_IMAGE of images.env but the busybox of local-path's
// short-lived helper pods).
func AddonImages() map[string]bool {
	out := map[string]bool{}
	for k, v := range Images() {
		if strings.HasSuffix(k, "_IMAGE") && k != "BUSYBOX_IMAGE" {
			out[v] = true
		}
	}
	return out
}
