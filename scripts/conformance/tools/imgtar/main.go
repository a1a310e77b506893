// Command imgtar writes a container image whose layers are root filesystem
// folders, as a docker-archive tarball (the `docker save` layout, which
// `ctr images import`, `docker load` and `podman load` accept). Standard
// library only.
//
//	imgtar --out agnhost.tar --tag registry.k8s.io/e2e-test-images/agnhost:2.66.1 \
//	    --entrypoint /agnhost --cmd pause --expose 80/tcp ROOTFS [ROOTFS2...]
//
// Each ROOTFS folder becomes one uncompressed layer, in order (a later
// folder's files win, as in a Dockerfile). Layers keep what the folder has:
// file modes including setuid, setgid and sticky bits, owners (numeric),
// symlinks, and hard links within one folder. Timestamps are set to
// $SOURCE_DATE_EPOCH (default: the Unix epoch) and entries are sorted, so
// equal folders give byte-identical layers. Device files, FIFOs and sockets
// are refused.
//
// With several --tag the image gets all of them. With --config-per-tag each
// tag gets its own image config (the same layers, a label
// org.opencontainers.image.version=<tag>), so the tags are distinct images
// (different image IDs) that share their layers.
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type containerConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

type imageConfig struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Created      string          `json:"created"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
	History      []history       `json:"history"`
}

type archiveManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

type layer struct {
	dir  string
	file string // temporary layer.tar
	hex  string // sha256 of layer.tar (= diff ID: the layer is uncompressed)
	size int64
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imgtar:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fset := flag.NewFlagSet("imgtar", flag.ContinueOnError)
	var tags, entrypoint, cmd, env, labels, expose listFlag
	out := fset.String("out", "", "output docker-archive tar (required)")
	arch := fset.String("arch", runtime.GOARCH, "image architecture (GOARCH spelling)")
	user := fset.String("user", "", "user the process runs as, default root")
	workdir := fset.String("workdir", "", "working directory, default /")
	stopSignal := fset.String("stop-signal", "", "signal that stops the container, e.g. SIGQUIT")
	tmpDir := fset.String("tmpdir", "", "folder for temporary files, on the file system of --out (default: --out's folder)")
	perTag := fset.Bool("config-per-tag", false, "one image config per tag (distinct image IDs, shared layers)")
	fset.Var(&tags, "tag", "image reference name:tag (repeatable, at least one)")
	fset.Var(&entrypoint, "entrypoint", "one Entrypoint argv element (repeatable)")
	fset.Var(&cmd, "cmd", "one Cmd argv element (repeatable)")
	fset.Var(&env, "env", "KEY=VALUE (repeatable; PATH defaults to "+defaultPath+")")
	fset.Var(&labels, "label", "KEY=VALUE image label (repeatable)")
	fset.Var(&expose, "expose", "exposed port, e.g. 80/tcp (repeatable)")
	fset.Usage = func() {
		fmt.Fprintln(fset.Output(), "usage: imgtar --out FILE --tag NAME:TAG [flags] ROOTFS-DIR...")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if len(tags) == 0 {
		return errors.New("at least one --tag is required")
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			return err
		}
	}
	if fset.NArg() == 0 {
		return errors.New("give at least one root filesystem folder")
	}
	created, err := buildTime()
	if err != nil {
		return err
	}
	envs := []string{}
	hasPath := false
	for _, e := range env {
		k, _, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		envs = append(envs, defaultPath)
	}
	envs = append(envs, env...)
	lbls := map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		lbls[k] = v
	}
	var ports map[string]struct{}
	for _, p := range expose {
		if !strings.Contains(p, "/") {
			p += "/tcp"
		}
		if ports == nil {
			ports = map[string]struct{}{}
		}
		ports[p] = struct{}{}
	}

	outDir := filepath.Dir(*out)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	if *tmpDir == "" {
		*tmpDir = outDir
	}
	var layers []*layer
	defer func() {
		for _, l := range layers {
			os.Remove(l.file)
		}
	}()
	for _, dir := range fset.Args() {
		l, err := writeLayer(dir, *tmpDir, created)
		if l != nil {
			layers = append(layers, l)
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", dir, err)
		}
	}

	createdStr := created.UTC().Format(time.RFC3339)
	base := imageConfig{
		Architecture: *arch,
		OS:           "linux",
		Created:      createdStr,
		Config: containerConfig{
			User: *user, ExposedPorts: ports, Env: envs, Entrypoint: entrypoint, Cmd: cmd,
			WorkingDir: *workdir, StopSignal: *stopSignal,
		},
		RootFS: rootFS{Type: "layers"},
	}
	var layerNames []string
	for _, l := range layers {
		base.RootFS.DiffIDs = append(base.RootFS.DiffIDs, "sha256:"+l.hex)
		base.History = append(base.History, history{Created: createdStr,
			CreatedBy: "imgtar (scripts/conformance): " + filepath.Base(l.dir)})
		layerNames = append(layerNames, l.hex+"/layer.tar")
	}

	type blob struct {
		name string
		data []byte
	}
	var configs []blob
	var mfst []archiveManifest
	groups := [][]string{tags}
	if *perTag {
		groups = nil
		for _, t := range tags {
			groups = append(groups, []string{t})
		}
	}
	for _, g := range groups {
		cfg := base
		cfg.Config.Labels = map[string]string{}
		for k, v := range lbls {
			cfg.Config.Labels[k] = v
		}
		if *perTag {
			cfg.Config.Labels["org.opencontainers.image.version"] = g[0][strings.LastIndex(g[0], ":")+1:]
		}
		if len(cfg.Config.Labels) == 0 {
			cfg.Config.Labels = nil
		}
		data, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		name := hex.EncodeToString(sum[:]) + ".json"
		configs = append(configs, blob{name, data})
		mfst = append(mfst, archiveManifest{Config: name, RepoTags: g, Layers: layerNames})
	}
	mfstJSON, err := json.Marshal(mfst)
	if err != nil {
		return err
	}
	// Legacy "repositories" file: repo -> tag -> top layer.
	repos := map[string]map[string]string{}
	for _, t := range tags {
		i := strings.LastIndex(t, ":")
		if repos[t[:i]] == nil {
			repos[t[:i]] = map[string]string{}
		}
		repos[t[:i]][t[i+1:]] = layers[len(layers)-1].hex
	}
	reposJSON, err := json.Marshal(repos)
	if err != nil {
		return err
	}

	tmp, err := os.CreateTemp(*tmpDir, ".imgtar-*.tar.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	seen := map[string]bool{}
	for _, l := range layers {
		if seen[l.hex] { // the same folder content twice
			continue
		}
		seen[l.hex] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: l.hex + "/", Mode: 0o755, ModTime: created}); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: l.hex + "/layer.tar", Mode: 0o644, Size: l.size, ModTime: created}); err != nil {
			return err
		}
		if err := copyFile(tw, l.file, l.size); err != nil {
			return err
		}
	}
	blobs := append(configs, blob{"manifest.json", mfstJSON}, blob{"repositories", reposJSON})
	for _, b := range blobs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: b.name, Mode: 0o644, Size: int64(len(b.data)), ModTime: created}); err != nil {
			return err
		}
		if _, err := tw.Write(b.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	var total int64
	for _, l := range layers {
		total += l.size
	}
	fmt.Printf("%s: %s, %d layer(s), %d MiB\n", *out, strings.Join(tags, " "), len(layers), total>>20)
	return nil
}

type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// writeLayer writes dir's content as a tar file in tmpDir.
func writeLayer(dir, tmpDir string, mtime time.Time) (*layer, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, errors.New("not a directory")
	}
	f, err := os.CreateTemp(tmpDir, ".imgtar-layer-*.tmp")
	if err != nil {
		return nil, err
	}
	l := &layer{dir: dir, file: f.Name()}
	hw := &hashWriter{w: f, h: sha256.New()}
	tw := tar.NewWriter(hw)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	walkErr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		hdr := &tar.Header{
			Name:    name,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: mtime,
		}
		switch m := info.Mode(); {
		case m.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case m&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case m.IsRegular():
			key := inode{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := links[key]; ok && st.Nlink > 1 {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				break
			}
			if st.Nlink > 1 {
				links[key] = name
			}
			hdr.Typeflag = tar.TypeReg
			hdr.Size = info.Size()
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, m.Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			return copyFile(tw, p, hdr.Size)
		}
		return nil
	})
	if walkErr != nil {
		f.Close()
		return l, walkErr
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return l, err
	}
	if err := f.Close(); err != nil {
		return l, err
	}
	l.hex = hex.EncodeToString(hw.h.Sum(nil))
	l.size = hw.n
	return l, nil
}

// checkTag wants name:tag with a lower-case repository path.
func checkTag(t string) error {
	i := strings.LastIndex(t, ":")
	if i <= strings.LastIndex(t, "/") || i == len(t)-1 || strings.ContainsAny(t, "@ \t\n") {
		return fmt.Errorf("--tag %q: want name:tag", t)
	}
	if _, path, ok := strings.Cut(t[:i], "/"); ok && path != strings.ToLower(path) {
		return fmt.Errorf("--tag %q: repository must be lower case", t)
	}
	return nil
}

func buildTime() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", v, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	if n != size {
		return fmt.Errorf("%s: changed size while reading (%d of %d bytes)", src, n, size)
	}
	return nil
}
