package addons

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	"k8s.io/klog/v2"

	"distro/manifests"
	"distro/pkg/config"
	"distro/pkg/fsutil"
)

// Values fill in the packaged add-on templates.
type Values struct {
	ClusterDNS    string
	ClusterDomain string
	// StorageDir holds local-path volumes on each node.
	StorageDir string
	// Images are the add-on image names (manifests/images.env).
	Images map[string]string
}

// Render returns the manifest of one packaged add-on.
func Render(name string, v Values) ([]byte, error) {
	if v.Images == nil {
		v.Images = manifests.Images()
	}
	t, err := template.New(name).Option("missingkey=error").ParseFS(manifests.FS, name+".yaml")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name+".yaml", v); err != nil {
		return nil, fmt.Errorf("add-on %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// Stage writes each packaged add-on into dir, or removes it when it is in
// disabled (the Deployer then removes its objects). A file with a .skip
// file beside it is left as it is: the way to keep local edits.
func Stage(dir string, v Values, disabled []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if v.Images == nil {
		v.Images = manifests.Images()
	}
	off := map[string]bool{}
	for _, d := range disabled {
		off[d] = true
	}
	for _, name := range config.PackagedAddons {
		path := filepath.Join(dir, name+".yaml")
		if _, err := os.Stat(path + ".skip"); err == nil {
			klog.Infof("add-on %s: %s.skip exists, leaving %s as it is", name, path, path)
			continue
		}
		if off[name] {
			if err := os.Remove(path); err == nil {
				klog.Infof("add-on %s is disabled: removing it from the cluster", name)
			} else if !os.IsNotExist(err) {
				return err
			}
			continue
		}
		data, err := Render(name, v)
		if err != nil {
			return err
		}
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
			continue
		}
		if err := fsutil.WriteFileAtomic(path, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
