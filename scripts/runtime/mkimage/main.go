// Command mkimage writes a single-layer container image as a docker-archive
// tarball (the `docker save` layout), which `ctr images import`,
// `docker load` and `podman load` all accept. Standard library only, so it
// works where no registry tooling is available.
//
//	go run ./mkimage --tag registry.k8s.io/pause:3.10.2 --out pause.tar \
//	    --entrypoint /pause --file ./pause:/pause:0755
//
//	go run ./mkimage --tag example.local/busybox:test --out busybox.tar \
//	    --entrypoint /bin/sh --file /bin/busybox:/bin/busybox:0755 \
//	    --symlink /bin/sh:busybox --symlink /bin/ls:busybox
//
// Flags that take a list may be repeated. --entrypoint and --cmd add one
// argv element per occurrence. Parent directories of every file and symlink
// are created (mode 0755). The layer is uncompressed; its sha256 is the
// image's only rootfs.diff_id. Timestamps come from $SOURCE_DATE_EPOCH
// (default: the Unix epoch), owners are 0:0, so equal inputs give a
// byte-identical archive.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// entry is one member of the layer tar.
type entry struct {
	name     string // clean, relative ("bin/sh"), no trailing slash
	typ      byte   // tar.TypeReg, tar.TypeDir, tar.TypeSymlink
	mode     int64
	src      string // regular files: host path
	linkname string // symlinks
	implicit bool   // directory created only as a parent
}

// Image config (the subset of the OCI/Docker image config we write).
type containerConfig struct {
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
	Comment   string `json:"comment,omitempty"`
}

type imageConfig struct {
	Architecture string          `json:"architecture"`
	Variant      string          `json:"variant,omitempty"`
	OS           string          `json:"os"`
	Created      string          `json:"created"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
	History      []history       `json:"history"`
}

// manifest.json entry of the docker-archive format.
type archiveManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fset := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	var tags, entrypoint, cmd, env, files, symlinks, dirs, labels listFlag
	out := fset.String("out", "", "output docker-archive tar (required)")
	arch := fset.String("arch", "amd64", "image architecture (GOARCH spelling)")
	variant := fset.String("variant", "", "architecture variant (e.g. v8 for arm64), optional")
	osName := fset.String("os", "linux", "image OS")
	user := fset.String("user", "", `user the process runs as ("uid:gid"), default root`)
	workdir := fset.String("workdir", "", "working directory, default /")
	noPath := fset.Bool("no-default-path", false, "do not add "+defaultPath+" to Env")
	fset.Var(&tags, "tag", "image reference, e.g. registry.k8s.io/pause:3.10.2 (repeatable, at least one)")
	fset.Var(&entrypoint, "entrypoint", "one Entrypoint argv element (repeatable)")
	fset.Var(&cmd, "cmd", "one Cmd argv element (repeatable)")
	fset.Var(&env, "env", "KEY=VALUE (repeatable)")
	fset.Var(&files, "file", "src:dst[:mode] host file src at image path dst, octal mode (default: src's permission bits) (repeatable)")
	fset.Var(&symlinks, "symlink", "dst:target symlink at image path dst pointing to target (repeatable)")
	fset.Var(&dirs, "dir", "dst[:mode] empty directory (repeatable; default mode 0755)")
	fset.Var(&labels, "label", "KEY=VALUE image label (repeatable)")
	fset.Usage = func() {
		fmt.Fprintln(fset.Output(), "usage: mkimage --tag NAME:TAG --out FILE [--entrypoint /x]... [--file src:dst[:mode]]... [--symlink dst:target]... [flags]")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fset.Args())
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	if len(tags) == 0 {
		return errors.New("at least one --tag is required")
	}
	for i, t := range tags {
		nt, err := checkTag(t)
		if err != nil {
			return err
		}
		tags[i] = nt
	}
	if len(files) == 0 && len(symlinks) == 0 && len(dirs) == 0 {
		return errors.New("the image would be empty: give --file, --symlink or --dir")
	}

	created, err := buildTime()
	if err != nil {
		return err
	}

	entries := map[string]*entry{}
	for _, f := range files {
		e, err := parseFile(f)
		if err != nil {
			return err
		}
		if err := add(entries, e); err != nil {
			return err
		}
	}
	for _, s := range symlinks {
		dst, target, ok := strings.Cut(s, ":")
		if !ok || target == "" {
			return fmt.Errorf("--symlink %q: want dst:target", s)
		}
		name, err := imagePath(dst)
		if err != nil {
			return fmt.Errorf("--symlink %q: %w", s, err)
		}
		if err := add(entries, &entry{name: name, typ: tar.TypeSymlink, mode: 0o777, linkname: target}); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		dst, modeStr, _ := strings.Cut(d, ":")
		name, err := imagePath(dst)
		if err != nil {
			return fmt.Errorf("--dir %q: %w", d, err)
		}
		mode := int64(0o755)
		if modeStr != "" {
			if mode, err = parseMode(modeStr); err != nil {
				return fmt.Errorf("--dir %q: %w", d, err)
			}
		}
		if err := add(entries, &entry{name: name, typ: tar.TypeDir, mode: mode}); err != nil {
			return err
		}
	}

	layer, err := writeLayer(entries, created)
	if err != nil {
		return err
	}
	layerSum := sha256.Sum256(layer)
	layerHex := hex.EncodeToString(layerSum[:])

	envs := []string{}
	if !*noPath && !hasKey(env, "PATH") {
		envs = append(envs, defaultPath)
	}
	envs = append(envs, env...)
	var lbls map[string]string
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		if lbls == nil {
			lbls = map[string]string{}
		}
		lbls[k] = v
	}
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}

	createdStr := created.UTC().Format(time.RFC3339)
	cfg := imageConfig{
		Architecture: *arch,
		Variant:      *variant,
		OS:           *osName,
		Created:      createdStr,
		Config: containerConfig{
			User:       *user,
			Env:        envs,
			Entrypoint: entrypoint,
			Cmd:        cmd,
			WorkingDir: *workdir,
			Labels:     lbls,
		},
		RootFS: rootFS{Type: "layers", DiffIDs: []string{"sha256:" + layerHex}},
		History: []history{{
			Created:   createdStr,
			CreatedBy: "distro mkimage",
			Comment:   fmt.Sprintf("%d file(s), %d symlink(s)", len(files), len(symlinks)),
		}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgSum := sha256.Sum256(cfgJSON)
	cfgHex := hex.EncodeToString(cfgSum[:])

	mfst := []archiveManifest{{
		Config:   cfgHex + ".json",
		RepoTags: tags,
		Layers:   []string{layerHex + "/layer.tar"},
	}}
	mfstJSON, err := json.Marshal(mfst)
	if err != nil {
		return err
	}
	// Legacy "repositories" file (read by old `docker load` without
	// manifest.json): repo -> tag -> top layer id.
	repos := map[string]map[string]string{}
	for _, t := range tags {
		i := strings.LastIndex(t, ":")
		repo, tag := t[:i], t[i+1:]
		if repos[repo] == nil {
			repos[repo] = map[string]string{}
		}
		repos[repo][tag] = layerHex
	}
	reposJSON, err := json.Marshal(repos)
	if err != nil {
		return err
	}
	// Legacy per-layer metadata as written by `docker save` (docker < 25).
	legacyJSON, err := json.Marshal(map[string]any{
		"id":           layerHex,
		"created":      createdStr,
		"os":           *osName,
		"architecture": *arch,
		"config":       cfg.Config,
	})
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".mkimage-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	members := []struct {
		name string
		data []byte
	}{
		{layerHex + "/VERSION", []byte("1.0")},
		{layerHex + "/json", legacyJSON},
		{layerHex + "/layer.tar", layer},
		{cfgHex + ".json", cfgJSON},
		{"manifest.json", mfstJSON},
		{"repositories", reposJSON},
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: layerHex + "/", Mode: 0o755, ModTime: created}); err != nil {
		return err
	}
	for _, m := range members {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: m.name, Mode: 0o644, Size: int64(len(m.data)), ModTime: created}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(m.data); err != nil {
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
	fmt.Printf("%s: %s config sha256:%s layer sha256:%s (%d bytes)\n", *out, strings.Join(tags, ","), cfgHex, layerHex, len(layer))
	return nil
}

// checkTag accepts name[:tag] (name lower-case, as Docker references
// require), adds ":latest" when no tag is given, and rejects digests.
func checkTag(t string) (string, error) {
	if t == "" || strings.Contains(t, "@") || strings.ContainsAny(t, " \t\n") {
		return "", fmt.Errorf("--tag %q: want name:tag", t)
	}
	name := t
	if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
		name = t[:i]
		if tag := t[i+1:]; tag == "" || len(tag) > 128 {
			return "", fmt.Errorf("--tag %q: bad tag", t)
		}
	} else {
		t += ":latest"
	}
	// The registry host part may contain upper case and a port; the path may not.
	host, rest, hasHost := strings.Cut(name, "/")
	if !hasHost || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		rest = name
	}
	if rest == "" || rest != strings.ToLower(rest) {
		return "", fmt.Errorf("--tag %q: repository must be non-empty lower case", t)
	}
	return t, nil
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

func hasKey(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// imagePath turns "/usr/bin/x" or "usr/bin/x" into "usr/bin/x".
func imagePath(p string) (string, error) {
	// Cleaning below "/" keeps ".." from leaving the image root.
	c := path.Clean("/" + p)
	if c == "/" {
		return "", errors.New("path must not be the root directory")
	}
	return strings.TrimPrefix(c, "/"), nil
}

func parseMode(s string) (int64, error) {
	m, err := strconv.ParseInt(s, 8, 64)
	if err != nil || m < 0 || m > 0o7777 {
		return 0, fmt.Errorf("bad octal mode %q", s)
	}
	return m, nil
}

func parseFile(spec string) (*entry, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("--file %q: want src:dst[:mode]", spec)
	}
	fi, err := os.Stat(parts[0])
	if err != nil {
		return nil, fmt.Errorf("--file %q: %w", spec, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("--file %q: %s is not a regular file", spec, parts[0])
	}
	name, err := imagePath(parts[1])
	if err != nil {
		return nil, fmt.Errorf("--file %q: %w", spec, err)
	}
	mode := int64(fi.Mode().Perm())
	if len(parts) == 3 {
		if mode, err = parseMode(parts[2]); err != nil {
			return nil, fmt.Errorf("--file %q: %w", spec, err)
		}
	}
	return &entry{name: name, typ: tar.TypeReg, mode: mode, src: parts[0]}, nil
}

// add inserts e and any missing parent directories, rejecting duplicates
// and paths below a non-directory.
func add(entries map[string]*entry, e *entry) error {
	for dir := path.Dir(e.name); dir != "."; dir = path.Dir(dir) {
		if p, ok := entries[dir]; ok {
			if p.typ != tar.TypeDir {
				return fmt.Errorf("%s: parent /%s is not a directory", "/"+e.name, dir)
			}
			continue
		}
		entries[dir] = &entry{name: dir, typ: tar.TypeDir, mode: 0o755, implicit: true}
	}
	if old, ok := entries[e.name]; ok {
		if old.typ == tar.TypeDir && old.implicit && e.typ == tar.TypeDir {
			entries[e.name] = e // explicit --dir overrides an implied parent's mode
			return nil
		}
		if old.implicit {
			return fmt.Errorf("/%s must be a directory: other entries are below it", e.name)
		}
		return fmt.Errorf("/%s given twice", e.name)
	}
	entries[e.name] = e
	return nil
}

func writeLayer(entries map[string]*entry, mtime time.Time) ([]byte, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	// Sorting by path puts every directory before its contents.
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		hdr := &tar.Header{
			Typeflag: e.typ,
			Name:     e.name,
			Mode:     e.mode,
			ModTime:  mtime,
			Uid:      0,
			Gid:      0,
		}
		switch e.typ {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeSymlink:
			hdr.Linkname = e.linkname
		case tar.TypeReg:
			fi, err := os.Stat(e.src)
			if err != nil {
				return nil, err
			}
			hdr.Size = fi.Size()
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("/%s: %w", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if err := copyFile(tw, e.src, hdr.Size); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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
